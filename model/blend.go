package model

// Scorer blends neighbour lists into one ranked list: the score of a
// candidate is the sum, over the lists it appears in, of the list's weight
// times its score there. With the similar-items lists of a user's history
// weighted by the user's affinity to each history item this is item-based
// collaborative filtering (SAR when the lists are dense Jaccard lists, EASE
// scoring when they are EASE rows).
//
// Both the server and offline evaluation rank through Scorer, so offline
// figures describe what is served. A Scorer is not safe for concurrent use;
// pool them. Memory is O(catalog size) and is reused: Reset costs only the
// entries touched since the last Reset.
type Scorer struct {
	acc     []float64
	mark    []uint32 // mark[i] == gen: touched; == gen+1: excluded
	gen     uint32
	touched []uint32
	top     []cand // AppendTop's heap
}

// cand is a candidate in AppendTop's heap: the score beside the item, so
// that comparisons read no other memory.
type cand struct {
	score float64
	item  uint32
}

// worse reports whether a ranks after b: a lower score, or on a tie a
// higher item number.
func (a cand) worse(b cand) bool {
	if a.score != b.score {
		return a.score < b.score
	}
	return a.item > b.item
}

// NewScorer returns a Scorer for items numbered below n.
func NewScorer(n int) *Scorer {
	s := &Scorer{}
	s.grow(n)
	s.gen = 2
	return s
}

func (s *Scorer) grow(n int) {
	if n <= len(s.acc) {
		return
	}
	acc := make([]float64, n)
	copy(acc, s.acc)
	mark := make([]uint32, n)
	copy(mark, s.mark)
	s.acc, s.mark = acc, mark
}

// Reset forgets all scores and exclusions and makes room for items numbered
// below n.
func (s *Scorer) Reset(n int) {
	for _, i := range s.touched {
		s.acc[i] = 0
	}
	s.touched = s.touched[:0]
	s.gen += 2
	if s.gen < 2 { // wrapped: clear marks once every 2^31 resets
		clear(s.mark)
		s.gen = 2
	}
	s.grow(n)
}

// Exclude keeps item out of the result whatever its score (seen items,
// the context item, out of stock …). Items out of range are ignored.
func (s *Scorer) Exclude(item uint32) {
	if int(item) < len(s.mark) {
		s.mark[item] = s.gen + 1
	}
}

// Excluded reports whether item was excluded since the last Reset.
func (s *Scorer) Excluded(item uint32) bool {
	return int(item) < len(s.mark) && s.mark[item] == s.gen+1
}

// Add blends list with weight w. It is AddScore for every entry, as one
// loop over local slices: it is most of a personal answer's work.
func (s *Scorer) Add(list []Neighbour, w float64) {
	acc, gen, touched := s.acc, s.gen, s.touched
	mark := s.mark[:len(acc)]
	for _, n := range list {
		i := n.Item
		if int(i) >= len(acc) {
			continue
		}
		switch m := mark[i]; m {
		case gen:
			acc[i] += w * float64(n.Score)
		case gen + 1: // excluded
		default:
			mark[i] = gen
			touched = append(touched, i)
			acc[i] += w * float64(n.Score)
		}
	}
	s.touched = touched
}

// AddScore adds w to the score of one item.
func (s *Scorer) AddScore(item uint32, w float64) {
	if int(item) >= len(s.acc) {
		return
	}
	switch s.mark[item] {
	case s.gen + 1:
		return
	case s.gen:
	default:
		s.mark[item] = s.gen
		s.touched = append(s.touched, item)
	}
	s.acc[item] += w
}

// Len returns the number of candidates with a score.
func (s *Scorer) Len() int { return len(s.touched) }

// AppendTop appends the k best candidates not excluded to dst, best first,
// and returns it. Candidates with a score <= 0 are left out. Ranking uses the
// float64 sums (scores are rounded to float32 only in the result), ties
// broken by lower item number.
func (s *Scorer) AppendTop(dst []Neighbour, k int) []Neighbour {
	if k <= 0 {
		return dst
	}
	// h is a min-heap of the best so far: h[0] ranks last. Once it is
	// full, most candidates fall below h[0] and cost one comparison.
	h := s.top[:0]
	acc, mark, gen := s.acc, s.mark, s.gen
	for _, i := range s.touched {
		score := acc[i]
		if mark[i] != gen || score <= 0 {
			continue
		}
		c := cand{score, i}
		if len(h) < k {
			h = append(h, c)
			for j := len(h) - 1; j > 0; {
				p := (j - 1) / 2
				if !h[j].worse(h[p]) {
					break
				}
				h[j], h[p] = h[p], h[j]
				j = p
			}
			continue
		}
		if score < h[0].score || !h[0].worse(c) {
			continue
		}
		h[0] = c
		down(h)
	}
	// Pop the worst first into the tail of the output.
	start := len(dst)
	for range h {
		dst = append(dst, Neighbour{})
	}
	for n := len(h); n > 0; n-- {
		dst[start+n-1] = Neighbour{Item: h[0].item, Score: float32(h[0].score)}
		h[0] = h[n-1]
		h = h[:n-1]
		down(h)
	}
	s.top = h[:0]
	return dst
}

// down restores the heap order of h from the root.
func down(h []cand) {
	for j := 0; ; {
		l := 2*j + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h[r].worse(h[l]) {
			m = r
		}
		if !h[m].worse(h[j]) {
			return
		}
		h[j], h[m] = h[m], h[j]
		j = m
	}
}

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
	topIdx  []uint32
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

// Add blends list with weight w.
func (s *Scorer) Add(list []Neighbour, w float64) {
	for _, n := range list {
		s.AddScore(n.Item, w*float64(n.Score))
	}
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
	// idx is a min-heap of kept items: idx[0] ranks last.
	idx := s.topIdx[:0]
	for _, i := range s.touched {
		if s.mark[i] != s.gen || s.acc[i] <= 0 {
			continue
		}
		if len(idx) < k {
			idx = append(idx, i)
			for c := len(idx) - 1; c > 0; {
				p := (c - 1) / 2
				if !s.worse(idx[c], idx[p]) {
					break
				}
				idx[c], idx[p] = idx[p], idx[c]
				c = p
			}
			continue
		}
		if !s.worse(idx[0], i) {
			continue
		}
		idx[0] = i
		s.down(idx)
	}
	// Pop the worst first into the tail of the output.
	start := len(dst)
	for range idx {
		dst = append(dst, Neighbour{})
	}
	for n := len(idx); n > 0; n-- {
		worst := idx[0]
		dst[start+n-1] = Neighbour{Item: worst, Score: float32(s.acc[worst])}
		idx[0] = idx[n-1]
		idx = idx[:n-1]
		s.down(idx)
	}
	s.topIdx = idx[:0]
	return dst
}

// worse reports whether item a ranks after item b.
func (s *Scorer) worse(a, b uint32) bool {
	if s.acc[a] != s.acc[b] {
		return s.acc[a] < s.acc[b]
	}
	return a > b
}

// down restores the heap order of idx from the root.
func (s *Scorer) down(idx []uint32) {
	for c := 0; ; {
		l := 2*c + 1
		if l >= len(idx) {
			return
		}
		m := l
		if r := l + 1; r < len(idx) && s.worse(idx[r], idx[l]) {
			m = r
		}
		if !s.worse(idx[m], idx[c]) {
			return
		}
		idx[c], idx[m] = idx[m], idx[c]
		c = m
	}
}

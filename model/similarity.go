package model

import (
	"fmt"
	"math"
)

// Similarity names a way to turn co-occurrence counts into a score.
type Similarity uint8

// Similarities. Count-based ones see only how many users (or baskets) hold
// item i, item j and both; EASE is a learned item-item regression.
const (
	SimCount Similarity = iota + 1
	SimJaccard
	SimCosine
	SimLift
	SimLLR
	SimEASE
)

var similarityNames = map[string]Similarity{
	"count":   SimCount,
	"jaccard": SimJaccard,
	"cosine":  SimCosine,
	"lift":    SimLift,
	"llr":     SimLLR,
	"ease":    SimEASE,
}

// ParseSimilarity returns the similarity named s.
func ParseSimilarity(s string) (Similarity, error) {
	if v, ok := similarityNames[s]; ok {
		return v, nil
	}
	return 0, fmt.Errorf("unknown similarity %q: want count, jaccard, cosine, lift, llr or ease", s)
}

// String returns the name of s.
func (s Similarity) String() string {
	for k, v := range similarityNames {
		if v == s {
			return k
		}
	}
	return "unknown"
}

// CoScore scores a pair from counts: cij holds both, ci holds i, cj holds j,
// out of n (users or baskets). It returns 0 where the pair has no support.
func CoScore(s Similarity, cij, ci, cj, n float64) float64 {
	if cij <= 0 {
		return 0
	}
	switch s {
	case SimCount:
		return cij
	case SimJaccard:
		return cij / (ci + cj - cij)
	case SimCosine:
		return cij / math.Sqrt(ci*cj)
	case SimLift:
		return cij * n / (ci * cj)
	case SimLLR:
		return LLR(cij, ci-cij, cj-cij, n-ci-cj+cij)
	}
	panic(fmt.Sprintf("BUG: CoScore of %v", s))
}

// LLR is Dunning's log-likelihood ratio (G²) of a 2×2 contingency table:
// k11 both, k12 first only, k21 second only, k22 neither. It is 0 when the
// two are independent and grows with evidence of association either way;
// callers that want only positive association check k11 against its
// expectation.
func LLR(k11, k12, k21, k22 float64) float64 {
	rowEntropy := entropy2(k11+k12, k21+k22)
	colEntropy := entropy2(k11+k21, k12+k22)
	matEntropy := entropy4(k11, k12, k21, k22)
	if rowEntropy+colEntropy < matEntropy {
		return 0 // rounding
	}
	return 2 * (rowEntropy + colEntropy - matEntropy)
}

func xLogX(x float64) float64 {
	if x <= 0 {
		return 0
	}
	return x * math.Log(x)
}

func entropy2(a, b float64) float64 { return xLogX(a+b) - xLogX(a) - xLogX(b) }

func entropy4(a, b, c, d float64) float64 {
	return xLogX(a+b+c+d) - xLogX(a) - xLogX(b) - xLogX(c) - xLogX(d)
}

// PairStats are the association-rule figures of "bought i ⇒ bought j".
type PairStats struct {
	Support    float64 // share of baskets holding both
	Confidence float64 // share of baskets holding i that hold j
	Lift       float64 // confidence over the share of baskets holding j
}

// AssociationStats returns the figures of i ⇒ j from cij baskets holding
// both, ci holding i, cj holding j, out of n baskets.
func AssociationStats(cij, ci, cj, n float64) PairStats {
	if cij <= 0 || ci <= 0 || cj <= 0 || n <= 0 {
		return PairStats{}
	}
	return PairStats{Support: cij / n, Confidence: cij / ci, Lift: cij * n / (ci * cj)}
}

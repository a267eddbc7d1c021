package model

import "math"

// RankingMetrics are top-k ranking figures averaged over users, with the
// definitions of the Microsoft Recommenders benchmarks: precision divides
// hits by k; recall by the user's number of relevant items; MAP sums the
// precision at each hit and divides by the user's number of relevant items;
// nDCG uses binary relevance, ideal DCG over min(relevant, k) hits. Users
// with no hit count as zeros. Coverage is the share of the catalog that
// appears in at least one list.
type RankingMetrics struct {
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	MAP       float64 `json:"map"`
	NDCG      float64 `json:"ndcg"`
	Coverage  float64 `json:"coverage"`
	Users     int     `json:"users"`
}

// MetricsAcc accumulates RankingMetrics user by user.
type MetricsAcc struct {
	k              int
	catalog        int
	users          int
	p, r, ap, ndcg float64
	recommended    map[uint32]struct{}
}

// NewMetricsAcc returns an accumulator for lists cut at k over a catalog of
// the given size.
func NewMetricsAcc(k, catalog int) *MetricsAcc {
	return &MetricsAcc{k: k, catalog: catalog, recommended: make(map[uint32]struct{})}
}

// AddUser scores one user's list. relevant reports whether an item is in the
// user's test set, which holds nRelevant items. Users with nRelevant == 0 are
// skipped. Only the first k entries of recs count.
func (m *MetricsAcc) AddUser(recs []Neighbour, relevant func(item uint32) bool, nRelevant int) {
	if nRelevant <= 0 {
		return
	}
	m.users++
	if len(recs) > m.k {
		recs = recs[:m.k]
	}
	hits := 0
	var ap, dcg float64
	for rank, n := range recs {
		m.recommended[n.Item] = struct{}{}
		if !relevant(n.Item) {
			continue
		}
		hits++
		ap += float64(hits) / float64(rank+1)
		dcg += 1 / math.Log2(float64(rank+2))
	}
	if hits == 0 {
		return
	}
	var idcg float64
	for i := 0; i < min(nRelevant, m.k); i++ {
		idcg += 1 / math.Log2(float64(i+2))
	}
	m.p += float64(hits) / float64(m.k)
	m.r += float64(hits) / float64(nRelevant)
	m.ap += ap / float64(nRelevant)
	m.ndcg += dcg / idcg
}

// Result returns the averages so far.
func (m *MetricsAcc) Result() RankingMetrics {
	if m.users == 0 {
		return RankingMetrics{}
	}
	n := float64(m.users)
	r := RankingMetrics{Precision: m.p / n, Recall: m.r / n, MAP: m.ap / n, NDCG: m.ndcg / n, Users: m.users}
	if m.catalog > 0 {
		r.Coverage = float64(len(m.recommended)) / float64(m.catalog)
	}
	return r
}

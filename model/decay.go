package model

import "math"

// Decay returns the weight of an event age seconds old under exponential
// decay with the given half-life in seconds: 1 at age 0, 0.5 at one
// half-life. A half-life <= 0 disables decay. Events from the future (age < 0)
// weigh 1, as the newest ones do.
func Decay(age, halfLife float64) float64 {
	if halfLife <= 0 || age <= 0 {
		return 1
	}
	return math.Exp2(-age / halfLife)
}

// Weights turn events into affinity: how much an event says about a user's
// interest in an item.
type Weights struct {
	View     float64 `json:"view"`
	Click    float64 `json:"click"`
	Cart     float64 `json:"cart"`
	Purchase float64 `json:"purchase"`
	Rating   float64 `json:"rating"`
	// RatingValue multiplies rating events by their value (SAR's habit),
	// so that a 5-star rating counts five times a 1-star one.
	RatingValue bool `json:"rating_value"`
	// HalfLife in seconds for the recency decay of affinity; 0 disables it.
	HalfLife float64 `json:"half_life"`
}

// DefaultWeights suit shop behaviour: a purchase says more than a cart, a
// cart more than a view. A rating counts as one interaction whatever its
// value, and there is no recency decay: on the ML-100k item split both
// choices measured better than rating × 14-day decay (nDCG@10 0.461 against
// 0.415 with EASE; README, "Quality").
func DefaultWeights() Weights {
	return Weights{View: 1, Click: 1, Cart: 3, Purchase: 5, Rating: 1}
}

// Of returns the undecayed weight of one event; 0 for types that carry no
// item interest (impressions, exposures, …).
func (w *Weights) Of(t EventType, value float64, hasValue bool) float64 {
	switch t {
	case EventView:
		return w.View
	case EventClick:
		return w.Click
	case EventCart:
		return w.Cart
	case EventPurchase:
		return w.Purchase
	case EventRating:
		if w.RatingValue && hasValue {
			return w.Rating * value
		}
		return w.Rating
	}
	return 0
}

// Affinity returns the weight of one event seen age seconds ago.
func (w *Weights) Affinity(t EventType, value float64, hasValue bool, age float64) float64 {
	x := w.Of(t, value, hasValue)
	if x == 0 {
		return 0
	}
	return x * Decay(age, w.HalfLife)
}

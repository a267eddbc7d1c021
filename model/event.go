package model

// EventType is the kind of a behaviour event.
type EventType uint8

// Event types. The numeric values are stored in the state store: append new
// types at the end, never renumber.
const (
	EventUnknown EventType = iota
	EventView
	EventCart
	EventPurchase
	EventRating
	EventClick
	EventImpression
	EventExposure
	EventConversion
	EventPageview
	EventLogin
	eventTypeCount
)

var eventTypeNames = [eventTypeCount]string{
	EventUnknown:    "unknown",
	EventView:       "view",
	EventCart:       "cart",
	EventPurchase:   "purchase",
	EventRating:     "rating",
	EventClick:      "click",
	EventImpression: "impression",
	EventExposure:   "exposure",
	EventConversion: "conversion",
	EventPageview:   "pageview",
	EventLogin:      "login",
}

// String returns the wire name of t.
func (t EventType) String() string {
	if t < eventTypeCount {
		return eventTypeNames[t]
	}
	return "unknown"
}

// ParseEventType returns the type named by b (lower case wire name; "add_to_cart"
// and "order" are accepted as aliases of cart and purchase). It does not allocate.
func ParseEventType(b []byte) (EventType, bool) {
	switch string(b) {
	case "view":
		return EventView, true
	case "cart", "add_to_cart", "addtocart":
		return EventCart, true
	case "purchase", "order", "transaction":
		return EventPurchase, true
	case "rating":
		return EventRating, true
	case "click":
		return EventClick, true
	case "impression":
		return EventImpression, true
	case "exposure":
		return EventExposure, true
	case "conversion":
		return EventConversion, true
	case "pageview", "page_view":
		return EventPageview, true
	case "login":
		return EventLogin, true
	}
	return EventUnknown, false
}

// Event is one behaviour event.
//
// The byte-slice fields are borrowed from whoever produced the event (a file
// reader, a request body): they are valid until the producer's next call and
// must be copied to be kept.
type Event struct {
	User   []byte
	Item   []byte
	Basket []byte
	Type   EventType
	// TS is the event time in Unix seconds.
	TS int64
	// Value is the rating for rating events, the quantity or amount for
	// purchases where known. HasValue says whether the source gave one.
	Value    float64
	HasValue bool
}

// Reset clears e for reuse, keeping nothing borrowed.
func (e *Event) Reset() { *e = Event{} }

// Item is one catalog entry.
type Item struct {
	ID         string
	Title      string
	Categories []string
	Price      float64
	HasPrice   bool
	Stock      int64
	HasStock   bool
	Brand      string
	// Attrs holds any further columns or JSON fields, in input order.
	Attrs []Attr
}

// InStock reports whether the item may be recommended: an item with no stock
// figure counts as in stock.
func (it *Item) InStock() bool { return !it.HasStock || it.Stock > 0 }

// Attr is one free-form catalog attribute.
type Attr struct {
	Key, Value string
}

// Neighbour is one entry of a precomputed list.
//
// Item is a dense item number inside one snapshot. Score orders the list
// (higher first). Count is the support behind the score where it has one
// (users or baskets holding both items, events for popularity), else 0.
type Neighbour struct {
	Item  uint32
	Score float32
	Count uint32
}

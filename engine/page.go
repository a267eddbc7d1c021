package engine

// MaxPagePlacements bounds the placements of one page.
const MaxPagePlacements = 8

// PageRequest asks for everything one page view needs: the landing-page
// decision, each placement's recommendations and the visitor's segments.
// Its byte slices are borrowed for the call.
type PageRequest struct {
	// Page names a landing page to decide (optional).
	Page []byte
	// Placements names the placements to fill (at most
	// MaxPagePlacements); at least one of Page and Placements is needed.
	Placements [][]byte
	// Decide carries the visitor (empty: a new one, when Page is set), the
	// user, the User-Agent, the search term, referrer and campaign.
	Decide DecideRequest
	// Rec carries the context of the placements: item, cart, k and
	// filters. Its User, when set, is whose history and segments the
	// recommendations use (a logged-in shopper); by default the visitor's.
	Rec RecRequest
}

// Reset empties r, keeping the memory of its lists.
func (r *PageRequest) Reset() {
	placements := r.Placements[:0]
	r.Rec.Reset()
	*r = PageRequest{Placements: placements, Rec: r.Rec}
}

// PageResult is a page's answer. Reuse one across requests; it is valid
// until the View that filled it is released.
type PageResult struct {
	// Decided says whether Decision holds a decision (the request named a
	// page).
	Decided  bool
	Decision Decision
	// Recs holds one answer per requested placement, in order.
	Recs []Recs
	// Segments are the segments of the user, or else the visitor.
	Segments SegSet
	// Visitor is the visitor answered for ("" when none).
	Visitor []byte
}

// Page answers one page view in one pass over one snapshot, one history
// and one profile read. The request is checked whole before the decision
// is made, so a refused request counts no exposure.
func (v *View) Page(req *PageRequest, out *PageResult) error {
	out.Decided, out.Segments, out.Visitor = false, SegSet{}, nil
	if len(req.Placements) == 0 && len(req.Page) == 0 {
		return badParam("placements", "give page=, placements= or both")
	}
	if len(req.Placements) > MaxPagePlacements {
		return badParam("placements", "at most 8 placements")
	}
	for _, name := range req.Placements {
		if _, ok := v.cfg.Placements[string(name)]; !ok {
			return badParam("placements", "unknown placement "+string(name)+"; configured: "+v.cfg.names())
		}
	}
	n := len(req.Placements)
	for len(out.Recs) < n {
		out.Recs = append(out.Recs, Recs{})
	}
	out.Recs = out.Recs[:n]
	if n > 0 {
		// The recommendation parameters, before the decision, whose
		// exposure count would otherwise stand for a refused request.
		if err := v.begin(&req.Rec, &out.Recs[0]); err != nil {
			return err
		}
		if len(req.Rec.Item) > 0 {
			if err := v.e.CheckID("item", req.Rec.Item); err != nil {
				return err
			}
		}
	}
	visitor := req.Decide.Visitor
	if len(req.Page) > 0 {
		d := req.Decide
		d.Page = req.Page
		if err := v.Decide(&d, &out.Decision); err != nil {
			return err
		}
		out.Decided = true
		visitor = out.Decision.Visitor
	}
	if len(visitor) > 0 {
		if err := v.e.CheckID("visitor", visitor); err != nil {
			return err
		}
	}
	out.Visitor = visitor
	rec := req.Rec
	if rec.User == nil && len(visitor) > 0 {
		rec.User = visitor
	}
	for i, name := range req.Placements {
		rec.Placement = name
		if err := v.Recommend(&rec, &out.Recs[i]); err != nil {
			return err
		}
	}
	// The segments of whoever the recommendations were for: the user
	// when given, as placement rules see them.
	who := visitor
	if u := req.Rec.User; len(u) > 0 {
		if err := v.e.CheckID("user", u); err != nil {
			return err
		}
		who = u
	}
	var err error
	out.Segments, err = v.segmentsOf(who)
	return err
}

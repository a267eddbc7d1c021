package engine

import (
	"math"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/edgerec/edgerec/model"
)

// Profile is a user's stored profile as one read sees it. It is valid
// until the View that read it is released.
type Profile struct {
	*model.Profile
	// Segments are the configured segments the user is in.
	Segments SegSet
	// Now is the time of the read, for counts over windows.
	Now int64
}

// Profile reads user's profile and evaluates their segments; a user
// without a stored profile is NotFound. It writes nothing.
func (v *View) Profile(user []byte) (Profile, error) {
	if err := v.e.CheckID("user", user); err != nil {
		return Profile{}, err
	}
	segs, err := v.segmentsOf(user)
	if err != nil {
		return Profile{}, err
	}
	if err := v.loadProfile(user); err != nil {
		return Profile{}, err
	}
	if len(v.rc.Raw) == 0 {
		return Profile{}, errorf(NotFound, "unknown_user", "no profile for this user")
	}
	return Profile{Profile: &v.rc.P, Segments: segs, Now: v.now}, nil
}

// ProfileWindows returns the rolling windows profiles report counts
// over: their names as configured and their lengths in seconds.
func (c *Config) ProfileWindows() ([]string, []int64) {
	return c.Profiles.Windows, c.Profiles.windows
}

// Attribute limits.
const (
	maxAttrs      = 100
	maxAttrKeyLen = 64
	maxAttrValLen = 1024
)

// AttrUnsupported is the Type of an AttrUpdate whose value is of no
// supported type (a JSON object or array): SetAttributes refuses it.
const AttrUnsupported model.AttrType = 0xff

// AttrUpdate sets (or, with Type 0, deletes) one attribute. Key and Str
// are borrowed for the call.
type AttrUpdate struct {
	Key  []byte
	Type model.AttrType // model.AttrString, AttrNumber, AttrBool (Num 1 or 0), 0: delete
	Str  []byte
	Num  float64
}

func badAttrs(msg string) error { return errorf(Invalid, "bad_attributes", msg) }

// SetAttributes merges attributes from a shop or CRM into user's profile,
// durably: strings, numbers and booleans; an update of Type 0 deletes
// its key. The updates are checked in order, all before any is stored.
func (e *Engine) SetAttributes(user []byte, ups []AttrUpdate) error {
	if e.state == nil {
		return ErrNoState
	}
	if err := e.CheckID("user", user); err != nil {
		return err
	}
	if len(ups) > maxAttrs {
		return badAttrs("more than " + strconv.Itoa(maxAttrs) + " attributes")
	}
	for i := range ups {
		u := &ups[i]
		if len(u.Key) == 0 || len(u.Key) > maxAttrKeyLen || !printable(u.Key) {
			return badAttrs("attribute names are 1 to " + strconv.Itoa(maxAttrKeyLen) + " bytes of UTF-8 text without control characters")
		}
		name := strconv.Quote(string(u.Key))
		switch u.Type {
		case model.AttrString:
			if len(u.Str) > maxAttrValLen {
				return badAttrs("attribute " + name + ": longer than " + strconv.Itoa(maxAttrValLen) + " bytes")
			}
			if !utf8.Valid(u.Str) {
				// Exports would write it one way to CSV and another to
				// NDJSON.
				return badAttrs("attribute " + name + ": not valid UTF-8")
			}
		case model.AttrNumber:
			if math.IsNaN(u.Num) || math.IsInf(u.Num, 0) {
				return badAttrs("attribute " + name + ": not a finite number")
			}
		case model.AttrBool, 0:
		default:
			return badAttrs("attribute " + name + ": want a string, number, boolean or null")
		}
	}
	err := e.state.UpdateProfile(user, func(p *model.Profile) error {
		for _, u := range ups {
			p.SetAttr(u.Key, u.Type, u.Str, u.Num)
		}
		if len(p.Attrs) > maxAttrs {
			return badAttrs("a profile keeps at most " + strconv.Itoa(maxAttrs) + " attributes")
		}
		return nil
	})
	if err == nil {
		e.touchUser(user) // their segments may have changed
	}
	return err
}

// printable reports whether b is valid UTF-8 without control characters.
func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// Package jsonw appends JSON without reflection, for the answers server
// renders and the exports engine writes.
package jsonw

import (
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/edgerec/edgerec/model"
)

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string literal. Invalid UTF-8 becomes
// U+FFFD, so the output is always valid JSON.
func AppendString[T string | []byte](dst []byte, s T) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c >= 0x20 && c != 0x7f:
				dst = append(dst, c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else if r == '\u2028' || r == '\u2029' {
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		} else {
			dst = append(dst, string(s[i:i+size])...)
		}
		i += size
	}
	return append(dst, '"')
}

// AppendFloat appends f as a JSON number; NaN and infinities, which
// JSON cannot carry, become 0.
func AppendFloat(dst []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, '0')
	}
	return strconv.AppendFloat(dst, f, 'g', -1, bits)
}

// AppendAttrs appends p's attributes as a JSON object.
func AppendAttrs(dst []byte, p *model.Profile) []byte {
	dst = append(dst, '{')
	for i := range p.Attrs {
		a := &p.Attrs[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, a.Key)
		dst = append(dst, ':')
		dst = AppendAttrValue(dst, a)
	}
	return append(dst, '}')
}

// AppendAttrValue appends an attribute's value: a string, a boolean or a
// number.
func AppendAttrValue(dst []byte, a *model.ProfileAttr) []byte {
	switch a.Type {
	case model.AttrString:
		return AppendString(dst, a.Str)
	case model.AttrBool:
		return strconv.AppendBool(dst, a.Num == 1)
	}
	return strconv.AppendFloat(dst, a.Num, 'f', -1, 64)
}

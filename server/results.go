package server

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/valyala/fasthttp"
)

// handleResults answers /v1/experiments/{id}/results (engine.Results), as
// JSON or, with format=csv, CSV.
func (s *Server) handleResults(ctx *fasthttp.RequestCtx, id []byte) error {
	r, err := s.e.Results(id)
	if err != nil {
		return err
	}
	if string(ctx.QueryArgs().Peek("format")) == "csv" {
		var b strings.Builder
		b.WriteString("variant,weight,exposures,conversions,revenue,rate,lift,lift_ci95_low,lift_ci95_high,p_beat_control,p_best,expected_loss\n")
		opt := func(p *float64) string {
			if p == nil {
				return ""
			}
			return fmt.Sprint(*p)
		}
		for _, v := range r.Variants {
			fmt.Fprintf(&b, "%s,%v,%v,%v,%v,%v,%s,%s,%s,%s,%v,%v\n", v.Variant, v.Weight, v.Exposures, v.Conversions, v.Revenue, v.Rate,
				opt(v.Lift), opt(v.LiftLow), opt(v.LiftHigh), opt(v.PBeat), v.PBest, v.Loss)
		}
		ctx.SetContentType("text/csv; charset=utf-8")
		ctx.SetBodyString(b.String())
		return nil
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(append(b, '\n'))
	return nil
}

package server

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/engine"
)

// handleResults answers /v1/experiments/{id}/results (engine.Results), as
// JSON or, with format=csv, CSV.
func (s *Server) handleResults(ctx *fasthttp.RequestCtx, id []byte) error {
	args := ctx.QueryArgs()
	req := engine.ResultsRequest{Goal: string(args.Peek("goal"))}
	if b := args.Peek("phase"); len(b) > 0 {
		n, err := strconv.ParseUint(string(b), 10, 32)
		if err != nil || n == 0 {
			return errorf(fasthttp.StatusBadRequest, "bad_parameter", "phase: want a phase number from 1")
		}
		req.Phase = n
	}
	r, err := s.e.Results(id, req)
	if err != nil {
		return err
	}
	if string(args.Peek("format")) == "csv" {
		var b strings.Builder
		b.WriteString("phase,goal,variant,weight,exposures,conversions,revenue,rate,lift,lift_ci95_low,lift_ci95_high," +
			"lift_always_valid_low,lift_always_valid_high,decision,p_beat_control,p_best,expected_loss\n")
		opt := func(p *float64) string {
			if p == nil {
				return ""
			}
			return fmt.Sprint(*p)
		}
		for _, v := range r.Variants {
			fmt.Fprintf(&b, "%d,%s,%s,%v,%v,%v,%v,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", r.Phase, r.Goal, v.Variant, v.Weight, v.Exposures, v.Conversions, v.Revenue,
				opt(v.Rate), opt(v.Lift), opt(v.LiftLow), opt(v.LiftHigh), opt(v.SeqLow), opt(v.SeqHigh), v.Decision, opt(v.PBeat), opt(v.PBest), opt(v.Loss))
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

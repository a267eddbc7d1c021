-- wrk prints its latency percentiles after a correction for coordinated
-- omission (stats_correct in wrk 4.x): with e = duration / (requests /
-- connections), every latency n >= 2e also counts n-e, n-2e, ... while
-- above e. edgerec bench's closed loop reports raw latencies
-- (latency_us) beside the same correction (latency_wrk_corrected_us);
-- this done() recovers wrk's raw figures exactly, so that both can be
-- compared raw too: corrected[m] = raw[m] + raw[m+e] + raw[m+2e] + ...
-- for m > e, hence raw[m] = corrected[m] - corrected[m+e].
--
--   WRK_CONNECTIONS=16 wrk -t2 -c16 -d10s -s scripts/wrk-raw.lua URL
function done(summary, latency, requests)
   local conns = tonumber(os.getenv("WRK_CONNECTIONS") or "16")
   local per = math.floor(summary.requests / conns)
   if per == 0 then return end
   local e = math.floor(summary.duration / per)
   -- latency(i): the i-th distinct value (µs) and its count, ascending.
   local vals, cnt = {}, {}
   for i = 1, #latency do
      local v, c = latency(i)
      vals[i], cnt[v] = v, c
   end
   local raw, total, sum = {}, 0, 0
   for i, v in ipairs(vals) do
      local c = cnt[v]
      if v > e then c = c - (cnt[v + e] or 0) end
      raw[i], total, sum = c, total + c, sum + c * v
   end
   local function pct(p)
      -- as wrk's stats_percentile: the first value whose running count reaches the rank
      local rank, run = math.floor(p / 100 * total + 0.5 + 0.5), 0
      for i, v in ipairs(vals) do
         run = run + raw[i]
         if run >= rank then return v end
      end
      return vals[#vals]
   end
   io.write(string.format("raw latency: p50 %dus p90 %dus p99 %dus p99.9 %dus mean %.0fus (%d answers, interval %dus)\n",
      pct(50), pct(90), pct(99), pct(99.9), sum / math.max(total, 1), total, e))
end

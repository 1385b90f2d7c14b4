/*
 * cost.c - DESIGN 3.3 formulas (see cost.h).  Pure, no I/O.
 */
#include "cost/cost.h"

#include <math.h>
#include <string.h>

void tm_cost_compute(int64_t prompt_tokens, int64_t completion_tokens, double window_s,
                     double price_per_hour_usd, bool has_power, double avg_power_w,
                     struct tm_cost *out)
{
    memset(out, 0, sizeof(*out));
    out->tokens = prompt_tokens + completion_tokens;
    out->tps = window_s > 0 ? (double)out->tokens / window_s : 0.0;
    out->cost_usd = price_per_hour_usd / 3600.0 * window_s;
    if (out->tokens > 0) {
        out->has_cost_per_token = true;
        out->cost_per_token = out->cost_usd / (double)out->tokens;
        out->cost_per_1m_tokens = out->cost_per_token * 1e6;
    }
    if (has_power && isfinite(avg_power_w) && avg_power_w >= 0) {
        out->has_energy = true;
        out->energy_j = avg_power_w * window_s;
        if (out->tokens > 0) {
            out->has_joules_per_token = true;
            out->joules_per_token = out->energy_j / (double)out->tokens;
        }
    }
}

/*
 * cost.h - the metering formulas of DESIGN 3.3, in one place.
 *
 *   tokens             = prompt_tokens + completion_tokens
 *   tps                = tokens / window_s                      (tokens per second)
 *   cost_usd           = price_per_hour_usd / 3600 * window_s   (USD, that GPU, that window)
 *   cost_per_token     = cost_usd / tokens                      (USD; null when tokens == 0)
 *   cost_per_1m_tokens = cost_per_token * 1e6                   (USD per 1M tokens)
 *   energy_j           = avg_power_w * window_s                 (J; null without power samples)
 *   joules_per_token   = energy_j / tokens                      (J; null when either is)
 *
 * A value that cannot be computed is "absent" (has_* false), stored as null:
 * never inf, NaN or 0 (0 would claim free tokens, CASE-19).
 */
#ifndef TM_COST_H
#define TM_COST_H

#include <stdbool.h>
#include <stdint.h>

struct tm_cost {
    int64_t tokens;
    double tps;
    double cost_usd;
    bool has_cost_per_token;
    double cost_per_token;
    double cost_per_1m_tokens;
    bool has_energy;
    double energy_j;
    bool has_joules_per_token;
    double joules_per_token;
};

/**
 * @brief Compute the roll-up values of one GPU over one window.
 * @param prompt_tokens, completion_tokens  sums over the window, >= 0
 * @param window_s            window length in seconds, > 0
 * @param price_per_hour_usd  USD per GPU-hour, >= 0
 * @param has_power           whether @p avg_power_w is known
 * @param avg_power_w         mean power draw in W over the window
 */
void tm_cost_compute(int64_t prompt_tokens, int64_t completion_tokens, double window_s,
                     double price_per_hour_usd, bool has_power, double avg_power_w,
                     struct tm_cost *out);

#endif

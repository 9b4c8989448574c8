// segdeploy runtime: latency summary printed by segdeploy_infer.
//
// Percentiles are nearest-rank on the sorted samples: p-th percentile = sorted[ceil(p/100 * n) - 1]
// (NumPy's percentile(method="inverted_cdf")), so every reported value is one measured latency.
#pragma once

#include <cstddef>
#include <vector>

namespace segdeploy {

struct LatencySummary {
    size_t count = 0;
    double mean = 0, p50 = 0, p90 = 0, min = 0, max = 0;
};

//! Summary of `samples` (any unit). An empty input gives count 0 and zeros.
LatencySummary summarizeLatency(std::vector<double> samples);

}  // namespace segdeploy

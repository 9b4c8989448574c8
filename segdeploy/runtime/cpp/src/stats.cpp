// segdeploy runtime: latency summary (see include/segdeploy/stats.h).
#include "segdeploy/stats.h"

#include <algorithm>

namespace segdeploy {

namespace {
// p in percent (integer, so the rank is exact): rank = ceil(p * n / 100), 1-based.
double nearestRank(const std::vector<double>& sorted, size_t p) {
    size_t n = sorted.size();
    size_t rank = (p * n + 99) / 100;
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return sorted[rank - 1];
}
}  // namespace

LatencySummary summarizeLatency(std::vector<double> samples) {
    LatencySummary s;
    s.count = samples.size();
    if (samples.empty()) return s;
    std::sort(samples.begin(), samples.end());
    double sum = 0;
    for (double v : samples) sum += v;
    s.mean = sum / static_cast<double>(samples.size());
    s.p50 = nearestRank(samples, 50);
    s.p90 = nearestRank(samples, 90);
    s.min = samples.front();
    s.max = samples.back();
    return s;
}

}  // namespace segdeploy

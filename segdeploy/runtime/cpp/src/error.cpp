// segdeploy runtime: segdeploy::Error (one-line messages).
#include "segdeploy/error.h"

namespace segdeploy {

namespace {
std::string oneLine(const std::string& message) {
    std::string out;
    out.reserve(message.size());
    bool blank = false;
    for (char c : message) {
        bool space = (c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f');
        if (space) {
            blank = !out.empty();
            continue;
        }
        if (blank) out += ' ';
        blank = false;
        out += c;
    }
    return out;
}
}  // namespace

Error::Error(const std::string& message, ErrorCode code) : std::runtime_error(oneLine(message)), code_(code) {}

}  // namespace segdeploy

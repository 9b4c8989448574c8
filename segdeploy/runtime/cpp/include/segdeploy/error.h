// segdeploy runtime: the one exception type every part of the runtime throws.
//
// Contract: a segdeploy::Error carries a ONE-line message "<what failed>; <how to fix it>" (newlines and runs
// of blanks are collapsed by the constructor) and a code that maps to the process exit status used by every
// segdeploy command: 1 error (bad input, failed stage), 2 usage (bad arguments, an input the model's shape
// profile does not accept).
#pragma once

#include <stdexcept>
#include <string>

namespace segdeploy {

enum class ErrorCode : int {
    kError = 1,  //!< bad input file, failed CUDA/TensorRT call, corrupt artifact
    kUsage = 2,  //!< bad arguments or an input outside what the model accepts
};

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message, ErrorCode code = ErrorCode::kError);
    ErrorCode code() const noexcept { return code_; }
    int exitCode() const noexcept { return static_cast<int>(code_); }

private:
    ErrorCode code_;
};

//! Shorthand for Error(message, ErrorCode::kUsage).
inline Error usageError(const std::string& message) { return Error(message, ErrorCode::kUsage); }

}  // namespace segdeploy

// Library version string.
#include "spush/runtime/version.h"

namespace spush::runtime {
const char* version() { return "0.1.0"; }
}  // namespace spush::runtime

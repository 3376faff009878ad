// The spush version.
#pragma once
namespace spush::runtime {
const char* version();
}  // namespace spush::runtime

// Feeds arbitrary 40-byte headers and expectations to validate_header
// (runtime/src/communicator.cpp); half the inputs expect the header's own fields with one changed,
// to reach every check. Asserts that an accepted header matches every expectation with a weight in
// [0, 1] and a finite u, and that a rejection is a CommError naming the edge and round.
#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <string>

#include "fuzz_util.h"
#include "spush/runtime/communicator.h"

using spush::fuzz::FuzzInput;
using spush::runtime::MessageHeader;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzInput in(data, size);
  MessageHeader h;
  const auto raw = in.take_bytes(sizeof(h));
  std::memcpy(&h, raw.data(), raw.size());  // the rest keeps the defaults (magic, version)
  const uint8_t mode = in.byte();
  uint64_t round = h.round, payload = h.payload_bytes;
  uint16_t kind = h.kind, codec = h.codec;
  uint32_t src = h.src, dst = h.dst;
  if (mode & 1) {  // independent expectations
    round = in.take<uint64_t>();
    kind = in.take<uint16_t>();
    codec = in.take<uint16_t>();
    src = in.take<uint32_t>();
    dst = in.take<uint32_t>();
    payload = in.take<uint64_t>();
  } else {  // the header's own fields, one of them changed by a small amount
    const auto delta = in.take<int8_t>();
    switch ((mode >> 1) % 8) {
      case 0:
        round += delta;
        break;
      case 1:
        kind += delta;
        break;
      case 2:
        codec += delta;
        break;
      case 3:
        src += delta;
        break;
      case 4:
        dst += delta;
        break;
      case 5:
        payload += delta;
        break;
      default:
        break;  // unchanged: only magic, version, reserved, weight and u can fail
    }
  }
  try {
    spush::runtime::validate_header(h, round, kind, codec, src, dst, payload);
  } catch (const spush::runtime::CommError& e) {
    const std::string edge = fmt::format("message {} -> {} (round {})", src, dst, round);
    FUZZ_CHECK(std::string(e.what()).rfind(edge, 0) == 0, e.what());
    return 0;
  }
  FUZZ_CHECK(h.magic == MessageHeader::kMagic && h.version == MessageHeader::kVersion,
             "accepted a wrong magic or version");
  FUZZ_CHECK(h.round == round && h.kind == kind && h.codec == codec && h.src == src &&
                 h.dst == dst && h.payload_bytes == payload && h.reserved == 0,
             "accepted a header that differs from the expectations");
  FUZZ_CHECK(std::isfinite(h.weight) && h.weight >= 0 && h.weight <= 1 && std::isfinite(h.u),
             "accepted a weight outside [0, 1] or a non-finite u");
  return 0;
}

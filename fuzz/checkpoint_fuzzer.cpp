// Feeds arbitrary bytes to parse_checkpoint (the parser of read_checkpoint,
// runtime/src/checkpoint.cpp); an odd first byte makes the harness rewrite the CRC to reach the
// length fields. Asserts that an accepted file holds no more than its bytes and survives
// serialize_checkpoint + parse unchanged; CheckpointError is the expected rejection.
#include <zlib.h>

#include <cstring>
#include <vector>

#include "fuzz_util.h"
#include "spush/runtime/checkpoint.h"

using namespace spush::runtime;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::vector<uint8_t> bytes(data + 1, data + size);
  if ((data[0] & 1) && bytes.size() >= 4) {
    const size_t body = bytes.size() - 4;
    const uint32_t crc = static_cast<uint32_t>(crc32(0L, bytes.data(), static_cast<uInt>(body)));
    std::memcpy(bytes.data() + body, &crc, 4);
  }
  Checkpoint ck;
  try {
    ck = parse_checkpoint(bytes, "fuzz.ckpt");
  } catch (const CheckpointError&) {
    return 0;
  }
  FUZZ_CHECK(ck.source == "fuzz.ckpt" && ck.file_bytes == bytes.size(), "source or size");
  FUZZ_CHECK(ck.meta.is_object(), "metadata is not an object");
  size_t held = 0;
  for (const auto& [name, blob] : ck.blobs()) held += 12 + name.size() + blob.size();
  FUZZ_CHECK(held <= bytes.size(), "entries hold more bytes than the file");
  const std::vector<uint8_t> again = serialize_checkpoint(ck);
  const Checkpoint back = parse_checkpoint(again, "again.ckpt");  // must not throw
  FUZZ_CHECK(back.meta.dump() == ck.meta.dump(), "metadata changed in a round trip");
  FUZZ_CHECK(back.blobs() == ck.blobs(), "entries changed in a round trip");
  return 0;
}

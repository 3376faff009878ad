// Checkpoint files: versioned, checksummed, written atomically (write + fsync + rename).
//
// Layout (little-endian):
//   "SPUSHCKP" | u32 version | u64 meta_len | meta (JSON text)
//   | u32 count | count x ( u32 name_len | name | u64 nbytes | bytes )
//   | u32 crc32 of everything before it
// A reader verifies magic, version, sizes and CRC before trusting anything, and throws
// CheckpointError naming the file and what was wrong.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace spush::runtime {

struct CheckpointError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Checkpoint {
 public:
  static constexpr uint32_t kVersion = 1;
  nlohmann::json meta = nlohmann::json::object();

  void put_bytes(const std::string& name, const void* data, size_t nbytes);
  void put_floats(const std::string& name, const float* data, int64_t count) {
    put_bytes(name, data, static_cast<size_t>(count) * sizeof(float));
  }
  bool has(const std::string& name) const { return blobs_.count(name) > 0; }
  // Copies a blob out; throws CheckpointError if it is missing or its size differs.
  void get_bytes(const std::string& name, void* data, size_t nbytes) const;
  void get_floats(const std::string& name, float* data, int64_t count) const {
    get_bytes(name, data, static_cast<size_t>(count) * sizeof(float));
  }
  const std::vector<uint8_t>& blob(const std::string& name) const;
  const std::map<std::string, std::vector<uint8_t>>& blobs() const { return blobs_; }
  std::string source;       // file it was read from (for error messages)
  uint64_t file_bytes = 0;  // size of the file it was read from
  uint32_t crc32 = 0;       // its checksum (the file's last 4 bytes)

 private:
  std::map<std::string, std::vector<uint8_t>> blobs_;
};

// Writes to a temporary file beside `path`, fsyncs it, renames it over `path` and fsyncs the
// directory: a crash leaves either the old file or the new one, never a partial file.
// Returns the written file's size and checksum.
struct WrittenCheckpoint {
  uint64_t bytes = 0;
  uint32_t crc32 = 0;
};
WrittenCheckpoint write_checkpoint(const std::string& path, const Checkpoint& ckpt);
// The bytes write_checkpoint writes (the layout above, CRC included).
std::vector<uint8_t> serialize_checkpoint(const Checkpoint& ckpt);
Checkpoint read_checkpoint(const std::string& path);
// The reader on a file's bytes held in memory (read_checkpoint reads the file and calls it);
// `source` names the file in errors. Checks, in order: size, magic, version, CRC, then every
// length field against the bytes left before it is used; the metadata must be a JSON object and
// entry names unique. Throws CheckpointError naming the source and what was wrong.
Checkpoint parse_checkpoint(std::span<const uint8_t> bytes, const std::string& source);

}  // namespace spush::runtime

// Atomic, versioned, CRC-checked checkpoint files; the reader is an in-memory parser
// (parse_checkpoint, also fed by fuzz/) that bounds every length field by the bytes left.
#include "spush/runtime/checkpoint.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>

namespace spush::runtime {
namespace {

constexpr char kMagic[8] = {'S', 'P', 'U', 'S', 'H', 'C', 'K', 'P'};
// magic, version, metadata length, entry count, CRC.
constexpr size_t kMinBytes = 8 + 4 + 8 + 4 + 4;

template <typename T>
void append(std::vector<uint8_t>& out, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

// Reads the body of a checkpoint (everything before the CRC) front to back; every length is
// compared with the bytes left before it is used.
class Reader {
 public:
  Reader(std::span<const uint8_t> data, const std::string& source) : data_(data), source_(source) {}
  template <typename T>
  T get(const char* what) {
    T v;
    std::memcpy(&v, take(sizeof(T), what), sizeof(T));
    return v;
  }
  const uint8_t* take(uint64_t n, const char* what) {
    if (n > left()) {
      throw CheckpointError(fmt::format(
          "checkpoint {}: truncated while reading {}: {} bytes needed at offset {}, {} left",
          source_, what, n, pos_, left()));
    }
    const uint8_t* p = data_.data() + pos_;
    pos_ += static_cast<size_t>(n);
    return p;
  }
  size_t pos() const { return pos_; }
  uint64_t left() const { return data_.size() - pos_; }

 private:
  std::span<const uint8_t> data_;
  const std::string& source_;
  size_t pos_ = 0;
};

std::string errno_text() { return std::strerror(errno); }

// zlib's crc32 takes 32-bit lengths: 1 GiB at a time.
uint32_t checkpoint_crc32(std::span<const uint8_t> bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t off = 0; off < bytes.size(); off += (1u << 30)) {
    const size_t n = std::min<size_t>(bytes.size() - off, 1u << 30);
    crc = crc32(crc, bytes.data() + off, static_cast<uInt>(n));
  }
  return static_cast<uint32_t>(crc);
}

}  // namespace

void Checkpoint::put_bytes(const std::string& name, const void* data, size_t nbytes) {
  const auto* p = static_cast<const uint8_t*>(data);
  blobs_[name].assign(p, p + nbytes);
}

const std::vector<uint8_t>& Checkpoint::blob(const std::string& name) const {
  auto it = blobs_.find(name);
  if (it == blobs_.end())
    throw CheckpointError("checkpoint " + source + ": missing entry '" + name + "'");
  return it->second;
}

void Checkpoint::get_bytes(const std::string& name, void* data, size_t nbytes) const {
  const auto& b = blob(name);
  if (b.size() != nbytes)
    throw CheckpointError("checkpoint " + source + ": entry '" + name + "' has " +
                          std::to_string(b.size()) + " bytes, expected " + std::to_string(nbytes) +
                          " (was it written for a different model or node count?)");
  if (nbytes) std::memcpy(data, b.data(), nbytes);
}

std::vector<uint8_t> serialize_checkpoint(const Checkpoint& ckpt) {
  std::vector<uint8_t> buf(kMagic, kMagic + 8);
  append<uint32_t>(buf, Checkpoint::kVersion);
  const std::string meta = ckpt.meta.dump();
  append<uint64_t>(buf, meta.size());
  buf.insert(buf.end(), meta.begin(), meta.end());
  append<uint32_t>(buf, static_cast<uint32_t>(ckpt.blobs().size()));
  for (const auto& [name, bytes] : ckpt.blobs()) {
    append<uint32_t>(buf, static_cast<uint32_t>(name.size()));
    buf.insert(buf.end(), name.begin(), name.end());
    append<uint64_t>(buf, bytes.size());
    buf.insert(buf.end(), bytes.begin(), bytes.end());
  }
  append<uint32_t>(buf, checkpoint_crc32(buf));
  return buf;
}

WrittenCheckpoint write_checkpoint(const std::string& path, const Checkpoint& ckpt) {
  const std::vector<uint8_t> buf = serialize_checkpoint(ckpt);
  uint32_t crc;
  std::memcpy(&crc, buf.data() + buf.size() - 4, 4);
  const WrittenCheckpoint written{buf.size(), crc};

  const std::filesystem::path target(path);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0)
    throw CheckpointError("checkpoint " + path + ": cannot create " + tmp + ": " + errno_text());
  size_t done = 0;
  while (done < buf.size()) {
    const ssize_t w = ::write(fd, buf.data() + done, buf.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      const std::string err = errno_text();
      ::close(fd);
      ::unlink(tmp.c_str());
      throw CheckpointError("checkpoint " + path + ": write failed: " + err);
    }
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const std::string err = errno_text();
    ::unlink(tmp.c_str());
    throw CheckpointError("checkpoint " + path + ": fsync/close failed: " + err);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string err = errno_text();
    ::unlink(tmp.c_str());
    throw CheckpointError("checkpoint " + path + ": rename failed: " + err);
  }
  const std::string dir = target.has_parent_path() ? target.parent_path().string() : ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return written;
}

Checkpoint parse_checkpoint(std::span<const uint8_t> data, const std::string& source) {
  auto bad = [&](const std::string& what) {
    return CheckpointError(fmt::format("checkpoint {}: {}", source, what));
  };
  if (data.size() < kMinBytes)
    throw bad(fmt::format("file too short ({} bytes, at least {}) to be a spush checkpoint",
                          data.size(), kMinBytes));
  if (std::memcmp(data.data(), kMagic, 8) != 0) throw bad("not a spush checkpoint (bad magic)");
  const size_t body = data.size() - 4;
  uint32_t stored;
  std::memcpy(&stored, data.data() + body, 4);
  Reader r(data.first(body), source);
  r.take(8, "magic");
  const uint32_t version = r.get<uint32_t>("version");
  if (version != Checkpoint::kVersion)
    throw bad(fmt::format("format version {}, this build reads version {}", version,
                          Checkpoint::kVersion));
  if (checkpoint_crc32(data.first(body)) != stored)
    throw bad("checksum mismatch (file corrupt or truncated)");
  Checkpoint ck;
  ck.source = source;
  ck.file_bytes = data.size();
  ck.crc32 = stored;
  const auto meta_len = r.get<uint64_t>("metadata length");
  const auto* meta = r.take(meta_len, "metadata");
  try {
    ck.meta = nlohmann::json::parse(meta, meta + meta_len);
  } catch (const std::exception& e) {
    throw bad(fmt::format("metadata is not valid JSON: {}", e.what()));
  }
  if (!ck.meta.is_object())
    throw bad(fmt::format("metadata is a JSON {}, expected an object", ck.meta.type_name()));
  const auto count = r.get<uint32_t>("entry count");
  // Each entry takes at least 12 bytes (two lengths): a count beyond that is corrupt, checked
  // before the entries are read.
  if (count > r.left() / 12)
    throw bad(fmt::format("entry count {} does not fit in the {} bytes left", count, r.left()));
  for (uint32_t i = 0; i < count; ++i) {
    const auto name_len = r.get<uint32_t>("entry name length");
    const auto* name_bytes = r.take(name_len, "entry name");
    std::string name(reinterpret_cast<const char*>(name_bytes), name_len);
    const auto nbytes = r.get<uint64_t>("entry size");
    const auto* bytes = r.take(nbytes, "entry data");
    if (ck.has(name)) throw bad(fmt::format("entry {} repeats the name '{}'", i, name));
    ck.put_bytes(name, bytes, static_cast<size_t>(nbytes));
  }
  if (r.pos() != body) throw bad(fmt::format("{} unexpected trailing bytes", body - r.pos()));
  return ck;
}

Checkpoint read_checkpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CheckpointError("checkpoint " + path + ": cannot open for reading");
  std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw CheckpointError("checkpoint " + path + ": read error");
  return parse_checkpoint(data, path);
}

}  // namespace spush::runtime

// Atomic, versioned, CRC-checked checkpoint files.
#include "spush/runtime/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace spush::runtime {
namespace {

constexpr char kMagic[8] = {'S', 'P', 'U', 'S', 'H', 'C', 'K', 'P'};

template <typename T>
void append(std::vector<uint8_t>& out, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

class Reader {
 public:
  Reader(const std::vector<uint8_t>& data, size_t end, const std::string& path)
      : data_(data), end_(end), path_(path) {}
  template <typename T>
  T get(const char* what) {
    T v;
    need(sizeof(T), what);
    std::memcpy(&v, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  const uint8_t* take(size_t n, const char* what) {
    need(n, what);
    const uint8_t* p = data_.data() + pos_;
    pos_ += n;
    return p;
  }
  size_t pos() const { return pos_; }

 private:
  void need(size_t n, const char* what) {
    if (n > end_ - pos_)
      throw CheckpointError("checkpoint " + path_ + ": truncated while reading " + what);
  }
  const std::vector<uint8_t>& data_;
  size_t end_;
  const std::string& path_;
  size_t pos_ = 0;
};

std::string errno_text() { return std::strerror(errno); }

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

WrittenCheckpoint write_checkpoint(const std::string& path, const Checkpoint& ckpt) {
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
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t off = 0; off < buf.size(); off += (1u << 30)) {
    const size_t n = std::min<size_t>(buf.size() - off, 1u << 30);
    crc = crc32(crc, buf.data() + off, static_cast<uInt>(n));
  }
  append<uint32_t>(buf, static_cast<uint32_t>(crc));
  const WrittenCheckpoint written{buf.size(), static_cast<uint32_t>(crc)};

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

Checkpoint read_checkpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CheckpointError("checkpoint " + path + ": cannot open for reading");
  std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.size() < 8 + 4 + 8 + 4 + 4)
    throw CheckpointError("checkpoint " + path + ": file too short (" +
                          std::to_string(data.size()) + " bytes) to be a spush checkpoint");
  if (std::memcmp(data.data(), kMagic, 8) != 0)
    throw CheckpointError("checkpoint " + path + ": not a spush checkpoint (bad magic)");
  const size_t body = data.size() - 4;
  uint32_t stored;
  std::memcpy(&stored, data.data() + body, 4);
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t off = 0; off < body; off += (1u << 30))
    crc = crc32(crc, data.data() + off, static_cast<uInt>(std::min<size_t>(body - off, 1u << 30)));
  Reader r(data, body, path);
  r.take(8, "magic");
  const uint32_t version = r.get<uint32_t>("version");
  if (version != Checkpoint::kVersion)
    throw CheckpointError("checkpoint " + path + ": format version " + std::to_string(version) +
                          ", this build reads version " + std::to_string(Checkpoint::kVersion));
  if (static_cast<uint32_t>(crc) != stored)
    throw CheckpointError("checkpoint " + path + ": checksum mismatch (file corrupt or truncated)");
  Checkpoint ck;
  ck.source = path;
  ck.file_bytes = data.size();
  ck.crc32 = stored;
  const auto meta_len = r.get<uint64_t>("metadata length");
  const auto* meta = r.take(meta_len, "metadata");
  try {
    ck.meta = nlohmann::json::parse(meta, meta + meta_len);
  } catch (const std::exception& e) {
    throw CheckpointError("checkpoint " + path + ": metadata is not valid JSON: " + e.what());
  }
  const auto count = r.get<uint32_t>("entry count");
  for (uint32_t i = 0; i < count; ++i) {
    const auto name_len = r.get<uint32_t>("entry name length");
    const auto* name = r.take(name_len, "entry name");
    const auto nbytes = r.get<uint64_t>("entry size");
    const auto* bytes = r.take(nbytes, "entry data");
    ck.put_bytes(std::string(reinterpret_cast<const char*>(name), name_len), bytes, nbytes);
  }
  if (r.pos() != body)
    throw CheckpointError("checkpoint " + path + ": " + std::to_string(body - r.pos()) +
                          " unexpected trailing bytes");
  return ck;
}

}  // namespace spush::runtime

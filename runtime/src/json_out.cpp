// JSON output (json_out.h): the JSON-lines writer and atomic whole-file replacement used by the
// trainer (metrics.jsonl, config.json, summary.json), spush-gossip (--json) and spush-bench
// (--json).
#include "spush/runtime/json_out.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace spush::runtime {
namespace fs = std::filesystem;
namespace {

std::string reason(int err) { return err != 0 ? std::string(": ") + std::strerror(err) : ""; }

}  // namespace

JsonLinesWriter::JsonLinesWriter(fs::path path, Mode mode) : path_(std::move(path)) {
  errno = 0;
  out_.open(path_, std::ios::out | (mode == Mode::kAppend ? std::ios::app : std::ios::trunc));
  if (!out_)
    throw std::runtime_error("cannot open " + path_.string() + " for writing" + reason(errno));
}

void JsonLinesWriter::write(const nlohmann::json& object) {
  write_line(object.is_object(), object.dump());
}

void JsonLinesWriter::write(const nlohmann::ordered_json& object) {
  write_line(object.is_object(), object.dump());
}

void JsonLinesWriter::write_line(bool is_object, const std::string& line) {
  if (!is_object)
    throw std::invalid_argument("JSON lines for " + path_.string() + ": expected an object, got " +
                                line);
  errno = 0;
  out_ << line << '\n';
  out_.flush();
  if (!out_) throw std::runtime_error("cannot append to " + path_.string() + reason(errno));
}

void write_text_atomic(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp." + std::to_string(::getpid());
  auto fail = [&](const std::string& what, int err) {
    ::unlink(tmp.c_str());
    return std::runtime_error("cannot write " + path.string() + ": " + what + reason(err));
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw fail("cannot create the temporary file " + tmp.string(), errno);
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      throw fail("writing " + tmp.string(), err);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    throw fail("fsync of " + tmp.string(), err);
  }
  if (::close(fd) != 0) throw fail("closing " + tmp.string(), errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    throw fail("renaming " + tmp.string() + " over it", errno);
  // The rename is durable only once the directory entry is on disk.
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    throw std::runtime_error("cannot write " + path.string() + ": opening its directory" +
                             reason(errno));
  // Some file systems cannot fsync a directory (EINVAL); the file itself is then as durable
  // as they allow.
  const int rc = ::fsync(dfd);
  const int err = errno;
  ::close(dfd);
  if (rc != 0 && err != EINVAL)
    throw std::runtime_error("cannot write " + path.string() + ": fsync of its directory" +
                             reason(err));
}

void write_json_atomic(const fs::path& path, const nlohmann::json& document) {
  write_text_atomic(path, document.dump(2) + "\n");
}

void write_json_atomic(const fs::path& path, const nlohmann::ordered_json& document) {
  write_text_atomic(path, document.dump(2) + "\n");
}

}  // namespace spush::runtime

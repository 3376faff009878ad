// The one way the programs write JSON files: JSON Lines (one object per line, each line flushed,
// for per-epoch metrics and per-round rows) and whole documents replaced atomically (config,
// summary, reports), so a crash leaves either the old or the new file, never half of one.
// Errors are std::runtime_error naming the file.
#pragma once
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace spush::runtime {

// Writes JSON objects to a file, one per line; every line is flushed as it is written, so a
// reader (or a run killed mid-way) sees whole lines only.
class JsonLinesWriter {
 public:
  enum class Mode {
    kAppend,    // keep what the file holds (creating it when absent)
    kTruncate,  // start the file empty
  };
  // Opens path; throws std::runtime_error naming it when it cannot be opened for writing.
  JsonLinesWriter(std::filesystem::path path, Mode mode);
  // Writes one object as one line; throws std::invalid_argument for a non-object and
  // std::runtime_error naming the file when the write fails.
  void write(const nlohmann::json& object);
  void write(const nlohmann::ordered_json& object);
  const std::filesystem::path& path() const { return path_; }

 private:
  void write_line(bool is_object, const std::string& line);
  std::filesystem::path path_;
  std::ofstream out_;
};

// Replaces path with text atomically: a temporary file beside it, fsync, rename over path,
// fsync of the directory. Throws std::runtime_error naming path.
void write_text_atomic(const std::filesystem::path& path, const std::string& text);
// write_text_atomic of the document, indented by 2, with a final newline.
void write_json_atomic(const std::filesystem::path& path, const nlohmann::json& document);
void write_json_atomic(const std::filesystem::path& path, const nlohmann::ordered_json& document);

}  // namespace spush::runtime

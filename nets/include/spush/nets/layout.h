// Node-batched parameter storage (docs/DESIGN.md): one matrix X[rows x d], row stride `ld`
// padded to a multiple of 16 floats (64 bytes), and a layout table of named segments
// (layer tensors) that every row shares. A model's tensors are views into a row.
//
//   Layout lay; lay.add("conv1.weight", {6, 1, 5, 5}); lay.add("conv1.bias", {6});
//   NodeMatrix x(4, lay.size());        // 4 nodes
//   float* w = x.row(2) + lay.segment(0).offset;
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "spush/kernels/segments.h"

namespace spush::nets {

struct SegmentInfo {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // in floats from the row start
  int64_t size = 0;    // product of shape
};

class Layout {
 public:
  // Appends a segment; returns its index. Throws on an empty name or non-positive extent.
  int add(const std::string& name, std::vector<int64_t> shape);
  int count() const { return static_cast<int>(segs_.size()); }
  int64_t size() const { return offsets_.back(); }
  const SegmentInfo& segment(int i) const { return segs_.at(i); }
  const std::vector<SegmentInfo>& segments() const { return segs_; }
  // offsets()[i] = segment(i).offset, offsets()[count()] = size().
  const std::vector<int64_t>& offsets() const { return offsets_; }
  kernels::SegmentView view() const { return {offsets_.data(), count()}; }
  // Index of the segment called name, or -1.
  int find(const std::string& name) const;

 private:
  std::vector<SegmentInfo> segs_;
  std::vector<int64_t> offsets_{0};
};

// A host matrix of `rows` rows of `d` floats, zero-initialized, leading dimension ld >= d.
// A matrix either owns its storage or is a view of memory owned elsewhere (view(): the rows of
// an algorithm's backend buffer, for instance); copying either kind gives an owning copy.
class NodeMatrix {
 public:
  NodeMatrix() = default;
  NodeMatrix(int64_t rows, int64_t d);
  // A non-owning view of rows x d floats at data with leading dimension ld >= d.
  static NodeMatrix view(float* data, int64_t rows, int64_t d, int64_t ld);
  NodeMatrix(const NodeMatrix& other);
  NodeMatrix& operator=(const NodeMatrix& other);
  NodeMatrix(NodeMatrix&& other) noexcept;
  NodeMatrix& operator=(NodeMatrix&& other) noexcept;
  ~NodeMatrix() = default;

  int64_t rows() const { return rows_; }
  int64_t cols() const { return d_; }
  int64_t ld() const { return ld_; }
  bool is_view() const { return data_ != nullptr && owned_.empty(); }
  float* data() { return data_; }
  const float* data() const { return data_; }
  float* row(int64_t r) { return data_ + r * ld_; }
  const float* row(int64_t r) const { return data_ + r * ld_; }
  void fill(float v);
  // Copies row contents (not padding) from another matrix of the same shape.
  void copy_from(const NodeMatrix& other);

 private:
  int64_t rows_ = 0, d_ = 0, ld_ = 0;
  std::vector<float> owned_;
  float* data_ = nullptr;
};

// Row stride for d floats: d rounded up to a multiple of 16.
int64_t padded_ld(int64_t d);

}  // namespace spush::nets

// Parameter layout and the node-batched matrix.
#include "spush/nets/layout.h"

#include <algorithm>
#include <stdexcept>

namespace spush::nets {

int Layout::add(const std::string& name, std::vector<int64_t> shape) {
  if (name.empty()) throw std::invalid_argument("Layout::add: empty segment name");
  if (find(name) >= 0) throw std::invalid_argument("Layout::add: duplicate segment '" + name + "'");
  int64_t size = 1;
  for (int64_t e : shape) {
    if (e <= 0)
      throw std::invalid_argument("Layout::add: segment '" + name + "' has a non-positive extent");
    size *= e;
  }
  segs_.push_back(SegmentInfo{name, std::move(shape), offsets_.back(), size});
  offsets_.push_back(offsets_.back() + size);
  return count() - 1;
}

int Layout::find(const std::string& name) const {
  for (int i = 0; i < count(); ++i)
    if (segs_[i].name == name) return i;
  return -1;
}

int64_t padded_ld(int64_t d) { return (d + 15) / 16 * 16; }

NodeMatrix::NodeMatrix(int64_t rows, int64_t d) : rows_(rows), d_(d), ld_(padded_ld(d)) {
  if (rows < 0 || d < 0) throw std::invalid_argument("NodeMatrix: negative shape");
  owned_.assign(static_cast<size_t>(rows * ld_), 0.0f);
  data_ = owned_.data();
}

NodeMatrix NodeMatrix::view(float* data, int64_t rows, int64_t d, int64_t ld) {
  if (rows < 0 || d < 0 || ld < d || (rows > 0 && d > 0 && !data))
    throw std::invalid_argument("NodeMatrix::view: bad shape or null data");
  NodeMatrix m;
  m.rows_ = rows;
  m.d_ = d;
  m.ld_ = ld;
  m.data_ = data;
  return m;
}

NodeMatrix::NodeMatrix(const NodeMatrix& o) : rows_(o.rows_), d_(o.d_), ld_(o.ld_) {
  if (o.data_) owned_.assign(o.data_, o.data_ + rows_ * ld_);
  data_ = owned_.empty() ? nullptr : owned_.data();
}

NodeMatrix& NodeMatrix::operator=(const NodeMatrix& o) {
  if (this != &o) *this = NodeMatrix(o);
  return *this;
}

NodeMatrix::NodeMatrix(NodeMatrix&& o) noexcept
    : rows_(o.rows_), d_(o.d_), ld_(o.ld_), owned_(std::move(o.owned_)), data_(o.data_) {
  o.rows_ = o.d_ = o.ld_ = 0;
  o.data_ = nullptr;
}

NodeMatrix& NodeMatrix::operator=(NodeMatrix&& o) noexcept {
  if (this != &o) {
    rows_ = o.rows_;
    d_ = o.d_;
    ld_ = o.ld_;
    owned_ = std::move(o.owned_);
    data_ = o.data_;
    o.rows_ = o.d_ = o.ld_ = 0;
    o.data_ = nullptr;
  }
  return *this;
}

void NodeMatrix::fill(float v) { std::fill(data_, data_ + rows_ * ld_, v); }

void NodeMatrix::copy_from(const NodeMatrix& other) {
  if (other.rows_ != rows_ || other.d_ != d_)
    throw std::invalid_argument("NodeMatrix::copy_from: shape mismatch");
  for (int64_t r = 0; r < rows_; ++r) std::copy_n(other.row(r), d_, row(r));
}

}  // namespace spush::nets

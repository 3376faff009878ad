// Per-node mini-batch loaders over a Dataset (NCHW float images). A NodeLoader walks its node's
// index list in an order reshuffled every epoch from (seed, node, epoch), with optional random
// crop (zero padding p) and horizontal flip drawn from (seed, node, epoch, position), so a run is
// reproducible and resumes exactly from a saved LoaderState. MultiNodeLoader fills node-batched
// buffers images [nodes, batch, c, h, w] and labels [nodes * batch] (node-major).
//
//   MultiNodeLoader ml(train, partition_skew(train.labels, 10, 8, 0.8, 1), {.batch = 32});
//   std::vector<float> x; std::vector<int32_t> y;
//   ml.next_batch(x, y);                       // x: 8*32*c*h*w floats, y: 8*32 labels
#pragma once
#include <cstdint>
#include <vector>

#include "spush/nets/data.h"

namespace spush::nets {

struct AugmentOptions {
  // Random crop: pad the image by `pad` pixels on each side with the value of a raw black
  // pixel (0 before normalization, i.e. -mean/std per channel, or 0.0f when the Dataset records
  // no normalization), then crop h x w at an offset (oy, ox) uniform in [0, 2*pad]^2, as
  // torchvision's RandomCrop(size, padding=pad) does before Normalize. pad = 0 disables it.
  int pad = 0;
  // Horizontal flip (after the crop) with probability 0.5.
  bool flip = false;
};

struct LoaderOptions {
  int batch = 32;            // samples per node per step, >= 1
  uint64_t seed = 0;         // shuffle and augmentation seed (independent of the partition seed)
  bool shuffle = true;       // false: every epoch walks the index list in its given order
  AugmentOptions augment{};  // none by default
};

// Where a loader stands: the next batch starts at `position` (samples already consumed) of
// epoch `epoch`'s order. Always satisfies position + batch <= size.
struct LoaderState {
  int64_t epoch = 0;
  int64_t position = 0;
  bool operator==(const LoaderState&) const = default;
};

// Copies samples data[idx[k]] to images[k] (c*h*w floats each) and labels[k], k < n, without
// augmentation (evaluation batches). Throws std::out_of_range for an index outside the data.
void gather_samples(const Dataset& data, const int64_t* idx, int64_t n, float* images,
                    int32_t* labels);

// One node's loader. Drop-last semantics: an epoch yields batches_per_epoch() = size / batch
// full batches from that epoch's order; the size % batch samples left at its end are skipped
// (a different set every epoch when shuffling) and the next batch starts the next epoch.
// The Dataset must outlive the loader.
class NodeLoader {
 public:
  // Throws std::invalid_argument if batch < 1, pad < 0, an index is outside the data, or the
  // node holds fewer samples than one batch (the message names both numbers).
  NodeLoader(const Dataset& data, std::vector<int64_t> indices, int node,
             const LoaderOptions& options);

  int node() const { return node_; }
  int batch() const { return options_.batch; }
  int64_t size() const { return static_cast<int64_t>(indices_.size()); }
  int64_t batches_per_epoch() const { return size() / options_.batch; }
  const std::vector<int64_t>& indices() const { return indices_; }
  // The dataset indices of the current epoch in visiting order.
  const std::vector<int64_t>& epoch_order() const { return order_; }

  // Fills images[batch * c*h*w] and labels[batch] with the next batch and advances; moves to
  // the next epoch (reshuffling) when fewer than batch samples of this epoch remain.
  void next_batch(float* images, int32_t* labels);

  LoaderState state() const { return {epoch_, position_}; }
  // Jumps to a saved state. Throws std::invalid_argument unless epoch >= 0 and
  // 0 <= position <= size - batch.
  void set_state(const LoaderState& s);

 private:
  void build_order();  // order_ for epoch_
  // Writes sample order_[pos] of the current epoch to dst (augmented if enabled).
  void write_sample(int64_t pos, float* dst, int32_t* label) const;

  const Dataset* data_;
  std::vector<int64_t> indices_;
  int node_;
  LoaderOptions options_;
  std::vector<float> pad_value_;  // per channel
  std::vector<int64_t> order_;
  int64_t epoch_ = 0, position_ = 0;
};

// One NodeLoader per partition (node i gets parts[i]). The Dataset must outlive it.
class MultiNodeLoader {
 public:
  // Throws std::invalid_argument if parts is empty or a node's loader cannot be built (the
  // message names the node). parts[i] belongs to node first_node + i: the node number keys its
  // shuffles and augmentation, so a node draws the same batches whichever process hosts it.
  MultiNodeLoader(const Dataset& data, const std::vector<std::vector<int64_t>>& parts,
                  const LoaderOptions& options, int first_node = 0);

  int nodes() const { return static_cast<int>(loaders_.size()); }
  int batch() const { return batch_; }
  int64_t sample_size() const { return sample_size_; }
  // Floats / labels per call: nodes * batch * c*h*w and nodes * batch.
  int64_t images_size() const { return int64_t{nodes()} * batch_ * sample_size_; }
  int64_t labels_size() const { return int64_t{nodes()} * batch_; }
  // Fewest batches per epoch over the nodes (nodes with more data run through their epochs
  // more slowly; each node reshuffles on its own epoch boundary).
  int64_t min_batches_per_epoch() const;

  // images [nodes, batch, c, h, w], labels [nodes * batch]; node i's slice starts at
  // i * batch * c*h*w and i * batch.
  void next_batch(float* images, int32_t* labels);
  // Same, resizing the vectors to images_size() / labels_size().
  void next_batch(std::vector<float>& images, std::vector<int32_t>& labels);

  NodeLoader& node(int i) { return loaders_.at(i); }
  const NodeLoader& node(int i) const { return loaders_.at(i); }
  std::vector<LoaderState> state() const;
  // Throws std::invalid_argument if s.size() != nodes() or a state is invalid for its node.
  void set_state(const std::vector<LoaderState>& s);

 private:
  std::vector<NodeLoader> loaders_;
  int batch_;
  int64_t sample_size_;
};

}  // namespace spush::nets

// Per-node mini-batch loaders: epoch order = fisher_yates(indices) with
// std::mt19937_64(mix_seed({seed, node, epoch, kShuffleTag})); augmentation of the sample at
// (epoch, position) uses std::mt19937_64(mix_seed({seed, node, epoch, position, kAugmentTag})):
// oy = uniform_index(2p+1), ox = uniform_index(2p+1), then flip = top bit of the next draw.
#include "spush/nets/loader.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>
#include <stdexcept>

#include "spush/nets/partition.h"

namespace spush::nets {
namespace {

constexpr uint64_t kShuffleTag = 0x53485546464c45ULL;  // "SHUFFLE"
constexpr uint64_t kAugmentTag = 0x4155474d454e54ULL;  // "AUGMENT"

}  // namespace

void gather_samples(const Dataset& data, const int64_t* idx, int64_t n, float* images,
                    int32_t* labels) {
  const int64_t ss = data.sample_size();
  for (int64_t k = 0; k < n; ++k) {
    const int64_t i = idx[k];
    if (i < 0 || i >= data.count) {
      throw std::out_of_range(
          fmt::format("gather_samples: index {} at position {}, expected "
                      "[0, {}) for data set {}",
                      i, k, data.count, data.name));
    }
    std::copy(data.image(i), data.image(i) + ss, images + k * ss);
    labels[k] = data.labels[i];
  }
}

NodeLoader::NodeLoader(const Dataset& data, std::vector<int64_t> indices, int node,
                       const LoaderOptions& options)
    : data_(&data), indices_(std::move(indices)), node_(node), options_(options) {
  if (options_.batch < 1) {
    throw std::invalid_argument(
        fmt::format("NodeLoader (node {}): batch = {}, expected >= 1", node, options_.batch));
  }
  if (options_.augment.pad < 0) {
    throw std::invalid_argument(fmt::format("NodeLoader (node {}): augment pad = {}, expected >= 0",
                                            node, options_.augment.pad));
  }
  if (size() < options_.batch) {
    throw std::invalid_argument(fmt::format(
        "NodeLoader (node {}): batch size {} is larger than the node's {} samples, expected "
        "batch <= samples",
        node, options_.batch, size()));
  }
  for (int64_t i : indices_) {
    if (i < 0 || i >= data.count) {
      throw std::invalid_argument(
          fmt::format("NodeLoader (node {}): sample index {}, expected [0, {}) for data set {}",
                      node, i, data.count, data.name));
    }
  }
  if (static_cast<int64_t>(data.images.size()) != data.count * data.sample_size() ||
      static_cast<int64_t>(data.labels.size()) != data.count) {
    throw std::invalid_argument(fmt::format(
        "NodeLoader: data set {} holds {} floats and {} labels, expected {} x {} floats and {} "
        "labels",
        data.name, data.images.size(), data.labels.size(), data.count, data.sample_size(),
        data.count));
  }
  pad_value_.assign(data.c, 0.0f);
  if (static_cast<int>(data.mean.size()) == data.c && static_cast<int>(data.std.size()) == data.c) {
    for (int k = 0; k < data.c; ++k) pad_value_[k] = -data.mean[k] / data.std[k];
  }
  build_order();
}

void NodeLoader::build_order() {
  order_ = indices_;
  if (options_.shuffle) {
    std::mt19937_64 rng(mix_seed(
        {options_.seed, static_cast<uint64_t>(node_), static_cast<uint64_t>(epoch_), kShuffleTag}));
    fisher_yates(order_, rng);
  }
}

void NodeLoader::write_sample(int64_t pos, float* dst, int32_t* label) const {
  const Dataset& d = *data_;
  const int64_t idx = order_[pos];
  *label = d.labels[idx];
  const float* src = d.image(idx);
  const int pad = options_.augment.pad;
  if (pad == 0 && !options_.augment.flip) {
    std::copy(src, src + d.sample_size(), dst);
    return;
  }
  std::mt19937_64 rng(
      mix_seed({options_.seed, static_cast<uint64_t>(node_), static_cast<uint64_t>(epoch_),
                static_cast<uint64_t>(pos), kAugmentTag}));
  int oy = pad, ox = pad;  // offsets into the padded image; pad, pad = no shift
  if (pad > 0) {
    oy = static_cast<int>(uniform_index(rng, 2 * static_cast<uint64_t>(pad) + 1));
    ox = static_cast<int>(uniform_index(rng, 2 * static_cast<uint64_t>(pad) + 1));
  }
  const bool flip = options_.augment.flip && (rng() >> 63) != 0;
  // out[ch][y][x] = padded[ch][y + oy][xc + ox], xc = flip ? w-1-x : x, where
  // padded[ch][py][px] = src[ch][py - pad][px - pad] inside the image, else pad_value_[ch].
  for (int ch = 0; ch < d.c; ++ch) {
    const float* s = src + int64_t{ch} * d.h * d.w;
    float* o = dst + int64_t{ch} * d.h * d.w;
    for (int y = 0; y < d.h; ++y) {
      const int sy = y + oy - pad;
      float* orow = o + int64_t{y} * d.w;
      if (sy < 0 || sy >= d.h) {
        std::fill(orow, orow + d.w, pad_value_[ch]);
        continue;
      }
      const float* srow = s + int64_t{sy} * d.w;
      for (int x = 0; x < d.w; ++x) {
        const int xc = flip ? d.w - 1 - x : x;
        const int sx = xc + ox - pad;
        orow[x] = (sx < 0 || sx >= d.w) ? pad_value_[ch] : srow[sx];
      }
    }
  }
}

void NodeLoader::next_batch(float* images, int32_t* labels) {
  const int64_t ss = data_->sample_size();
  for (int k = 0; k < options_.batch; ++k) {
    write_sample(position_ + k, images + k * ss, labels + k);
  }
  position_ += options_.batch;
  if (position_ + options_.batch > size()) {
    ++epoch_;
    position_ = 0;
    build_order();
  }
}

void NodeLoader::set_state(const LoaderState& s) {
  if (s.epoch < 0 || s.position < 0 || s.position + options_.batch > size()) {
    throw std::invalid_argument(fmt::format(
        "NodeLoader (node {}): state epoch {} position {}, expected epoch >= 0 and position in "
        "[0, {}] (size {} - batch {})",
        node_, s.epoch, s.position, size() - options_.batch, size(), options_.batch));
  }
  const bool rebuild = s.epoch != epoch_;
  epoch_ = s.epoch;
  position_ = s.position;
  if (rebuild) build_order();
}

MultiNodeLoader::MultiNodeLoader(const Dataset& data,
                                 const std::vector<std::vector<int64_t>>& parts,
                                 const LoaderOptions& options, int first_node)
    : batch_(options.batch), sample_size_(data.sample_size()) {
  if (parts.empty()) {
    throw std::invalid_argument("MultiNodeLoader: 0 partitions, expected one per node (>= 1)");
  }
  loaders_.reserve(parts.size());
  for (size_t i = 0; i < parts.size(); ++i) {
    loaders_.emplace_back(data, parts[i], first_node + static_cast<int>(i), options);
  }
}

int64_t MultiNodeLoader::min_batches_per_epoch() const {
  int64_t m = loaders_.front().batches_per_epoch();
  for (const auto& l : loaders_) m = std::min(m, l.batches_per_epoch());
  return m;
}

void MultiNodeLoader::next_batch(float* images, int32_t* labels) {
  for (int i = 0; i < nodes(); ++i) {
    loaders_[i].next_batch(images + int64_t{i} * batch_ * sample_size_,
                           labels + int64_t{i} * batch_);
  }
}

void MultiNodeLoader::next_batch(std::vector<float>& images, std::vector<int32_t>& labels) {
  images.resize(static_cast<size_t>(images_size()));
  labels.resize(static_cast<size_t>(labels_size()));
  next_batch(images.data(), labels.data());
}

std::vector<LoaderState> MultiNodeLoader::state() const {
  std::vector<LoaderState> s;
  s.reserve(loaders_.size());
  for (const auto& l : loaders_) s.push_back(l.state());
  return s;
}

void MultiNodeLoader::set_state(const std::vector<LoaderState>& s) {
  if (s.size() != loaders_.size()) {
    throw std::invalid_argument(fmt::format(
        "MultiNodeLoader: {} loader states, expected one per node ({})", s.size(), nodes()));
  }
  for (size_t i = 0; i < s.size(); ++i) loaders_[i].set_state(s[i]);
}

}  // namespace spush::nets

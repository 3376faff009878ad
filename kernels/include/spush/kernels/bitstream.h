// Little-endian bit packing: bit i of the stream is bit (i % 8) of byte i / 8.
// Used by the sparse index codecs and the quantized value codecs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace spush::kernels {

class BitWriter {
 public:
  explicit BitWriter(std::vector<uint8_t>& out) : out_(out) {}
  // Append the low `nbits` (0..32) bits of value.
  void put(uint32_t value, int nbits) {
    for (int b = 0; b < nbits; ++b) {
      if (bit_ % 8 == 0) out_.push_back(0);
      if ((value >> b) & 1u) out_.back() |= static_cast<uint8_t>(1u << (bit_ % 8));
      ++bit_;
    }
  }
  size_t bits() const { return bit_; }

 private:
  std::vector<uint8_t>& out_;
  size_t bit_ = 0;
};

class BitReader {
 public:
  BitReader(const uint8_t* data, size_t nbytes) : data_(data), nbits_(nbytes * 8) {}
  uint32_t get(int nbits) {
    if (pos_ + static_cast<size_t>(nbits) > nbits_)
      throw std::runtime_error("bitstream truncated: needed " + std::to_string(nbits) +
                               " more bits at bit " + std::to_string(pos_) + " of " +
                               std::to_string(nbits_));
    uint32_t v = 0;
    for (int b = 0; b < nbits; ++b, ++pos_)
      v |= static_cast<uint32_t>((data_[pos_ / 8] >> (pos_ % 8)) & 1u) << b;
    return v;
  }
  size_t position() const { return pos_; }

 private:
  const uint8_t* data_;
  size_t nbits_;
  size_t pos_ = 0;
};

}  // namespace spush::kernels

// Model factory: LeNet-5, CIFAR ResNet(6n+2) (He et al. 2016, BasicBlocks 16/32/64, option A
// or B shortcuts), VGG-11 (cfg 64,M,128,M,256,256,M,512,512,M,512,512,M + 512-512-classes
// classifier) and an MLP, each with a choice of normalization (batch, group, EvoNorm-S0, the
// range variants for 8-bit training: Range BatchNorm and Range EvoNorm, none).
// ResNet-20 with BatchNorm on 3x32x32 has 269,722 parameters.
#include <cctype>
#include <stdexcept>

#include "spush/nets/model.h"

namespace spush::nets {
namespace {

enum class Norm { kBatch, kGroup, kEvo, kRangeBatch, kRangeEvo, kNone };

// EvoNorm-S0 and Range EvoNorm carry their own nonlinearity: no ReLU follows them.
bool self_activating(Norm n) { return n == Norm::kEvo || n == Norm::kRangeEvo; }

struct Builder {
  const ModelSpec& spec;
  Norm norm;
  bool lenet;
  std::shared_ptr<QuantContext> quant;  // null: fp32 layers

  std::unique_ptr<Layer> conv(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad,
                              bool bias) const {
    const Conv2dSpec cs{in, out, k, k, stride, stride, pad, pad, bias};
    if (quant) return std::make_unique<QConv2d>(cs, quant);
    return std::make_unique<Conv2d>(cs);
  }
  std::unique_ptr<Layer> linear(int64_t in, int64_t out) const {
    if (quant) return std::make_unique<QLinear>(in, out, true, quant);
    return std::make_unique<Linear>(in, out);
  }

  int64_t groups_for(int64_t channels) const {
    int64_t g;
    if (spec.groups > 0) {
      g = spec.groups;
    } else if (spec.group_size > 0) {
      if (channels % spec.group_size != 0)
        throw std::invalid_argument("make_model: group_size " + std::to_string(spec.group_size) +
                                    " does not divide a layer's " + std::to_string(channels) +
                                    " channels");
      g = channels / spec.group_size;
    } else if (lenet) {
      g = 2;
    } else {
      g = norm == Norm::kGroup ? channels / 2 : 8;
    }
    if (g < 1 || channels % g != 0)
      throw std::invalid_argument("make_model: " + std::to_string(g) +
                                  " groups do not divide a layer's " + std::to_string(channels) +
                                  " channels (set groups or group_size to a divisor)");
    return g;
  }

  // Appends the normalization for `channels` (named "norm<suffix>") and, if `relu`, a ReLU
  // ("relu<suffix>"); EvoNorm-S0 and Range EvoNorm carry their own nonlinearity, so no ReLU
  // follows them.
  void norm_act(Sequential& s, const std::string& suffix, int64_t channels, bool relu) const {
    switch (norm) {
      case Norm::kBatch:
        s.add("norm" + suffix, std::make_unique<BatchNorm2d>(channels));
        break;
      case Norm::kGroup:
        s.add("norm" + suffix, std::make_unique<GroupNorm>(groups_for(channels), channels));
        break;
      case Norm::kEvo:
        s.add("norm" + suffix, std::make_unique<EvoNormS0>(groups_for(channels), channels));
        return;
      case Norm::kRangeBatch:
        s.add("norm" + suffix, std::make_unique<RangeBatchNorm2d>(channels));
        break;
      case Norm::kRangeEvo:
        s.add("norm" + suffix, std::make_unique<RangeEvoNorm>(groups_for(channels), channels));
        return;
      case Norm::kNone:
        break;
    }
    if (relu) s.add("relu" + suffix, std::make_unique<ReLU>());
  }
};

Norm parse_norm(const std::string& s) {
  if (s == "batch") return Norm::kBatch;
  if (s == "group") return Norm::kGroup;
  if (s == "evonorm") return Norm::kEvo;
  if (s == "rangebn") return Norm::kRangeBatch;
  if (s == "rangeevo") return Norm::kRangeEvo;
  if (s == "none") return Norm::kNone;
  throw std::invalid_argument("make_model: unknown norm '" + s +
                              "' (accepted: batch, group, evonorm, rangebn, rangeevo, none)");
}

// Depth of "resnet<depth>", or -1 if the name is not of that form.
int64_t resnet_depth(const std::string& name) {
  if (name.rfind("resnet", 0) != 0 || name.size() == 6 || name.size() > 10) return -1;
  for (size_t i = 6; i < name.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(name[i]))) return -1;
  return std::stoll(name.substr(6));
}

std::unique_ptr<Sequential> build_lenet5(const ModelSpec& spec, const Builder& b) {
  auto s = std::make_unique<Sequential>();
  const int64_t pad = spec.in_h == 28 && spec.in_w == 28 ? 2 : 0;
  s->add("conv1", b.conv(spec.in_c, 6, 5, 1, pad, true));
  b.norm_act(*s, "1", 6, true);
  s->add("pool1", std::make_unique<MaxPool2d>(2));
  s->add("conv2", b.conv(6, 16, 5, 1, 0, true));
  b.norm_act(*s, "2", 16, true);
  s->add("pool2", std::make_unique<MaxPool2d>(2));
  s->add("flatten", std::make_unique<Flatten>());
  const int64_t flat = s->output_shape({spec.in_c, spec.in_h, spec.in_w}).numel();
  s->add("fc1", b.linear(flat, 120));
  s->add("relu3", std::make_unique<ReLU>());
  s->add("fc2", b.linear(120, 84));
  s->add("relu4", std::make_unique<ReLU>());
  s->add("fc3", b.linear(84, spec.num_classes));
  return s;
}

std::unique_ptr<Sequential> build_resnet(const ModelSpec& spec, const Builder& b, int64_t depth) {
  const int64_t n = (depth - 2) / 6;
  const bool option_b = spec.shortcut == "conv1x1";
  const bool relu = !self_activating(b.norm);
  auto s = std::make_unique<Sequential>();
  s->add("conv1", b.conv(spec.in_c, 16, 3, 1, 1, false));
  b.norm_act(*s, "1", 16, true);
  int64_t in_planes = 16;
  const int64_t planes_of[3] = {16, 32, 64};
  for (int stage = 0; stage < 3; ++stage) {
    const int64_t planes = planes_of[stage];
    for (int64_t i = 0; i < n; ++i) {
      const int64_t stride = (stage > 0 && i == 0) ? 2 : 1;
      auto main = std::make_unique<Sequential>();
      main->add("conv1", b.conv(in_planes, planes, 3, stride, 1, false));
      b.norm_act(*main, "1", planes, true);
      main->add("conv2", b.conv(planes, planes, 3, 1, 1, false));
      b.norm_act(*main, "2", planes, false);
      auto shortcut = std::make_unique<Sequential>();
      if (stride != 1 || in_planes != planes) {
        if (option_b) {
          shortcut->add("conv", b.conv(in_planes, planes, 1, stride, 0, false));
          b.norm_act(*shortcut, "", planes, false);
        } else {
          shortcut->add("pad", std::make_unique<ZeroPadShortcut>(in_planes, planes, stride));
        }
      }
      s->add("layer" + std::to_string(stage + 1) + "." + std::to_string(i),
             std::make_unique<BasicBlock>(std::move(main), std::move(shortcut), relu));
      in_planes = planes;
    }
  }
  s->add("pool", std::make_unique<GlobalAvgPool>());
  s->add("flatten", std::make_unique<Flatten>());
  s->add("fc", b.linear(64, spec.num_classes));
  return s;
}

std::unique_ptr<Sequential> build_vgg11(const ModelSpec& spec, const Builder& b) {
  static const int64_t cfg[] = {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};  // 0 = M
  auto s = std::make_unique<Sequential>();
  int64_t in = spec.in_c, conv = 0, pool = 0;
  for (int64_t v : cfg) {
    if (v == 0) {
      s->add("pool" + std::to_string(++pool), std::make_unique<MaxPool2d>(2));
    } else {
      const std::string k = std::to_string(++conv);
      s->add("conv" + k, b.conv(in, v, 3, 1, 1, true));
      b.norm_act(*s, k, v, true);
      in = v;
    }
  }
  s->add("flatten", std::make_unique<Flatten>());
  const int64_t flat = s->output_shape({spec.in_c, spec.in_h, spec.in_w}).numel();
  s->add("fc1", b.linear(flat, 512));
  s->add("relu_fc1", std::make_unique<ReLU>());
  s->add("fc2", b.linear(512, 512));
  s->add("relu_fc2", std::make_unique<ReLU>());
  s->add("fc3", b.linear(512, spec.num_classes));
  return s;
}

std::unique_ptr<Sequential> build_mlp(const ModelSpec& spec, const Builder& b) {
  auto s = std::make_unique<Sequential>();
  s->add("flatten", std::make_unique<Flatten>());
  int64_t in = spec.in_c * spec.in_h * spec.in_w;
  for (size_t i = 0; i < spec.mlp_hidden.size(); ++i) {
    const int64_t h = spec.mlp_hidden[i];
    if (h <= 0)
      throw std::invalid_argument("make_model: mlp hidden size " + std::to_string(h) +
                                  " at position " + std::to_string(i) + " must be > 0");
    s->add("fc" + std::to_string(i + 1), b.linear(in, h));
    s->add("relu" + std::to_string(i + 1), std::make_unique<ReLU>());
    in = h;
  }
  s->add("fc" + std::to_string(spec.mlp_hidden.size() + 1), b.linear(in, spec.num_classes));
  return s;
}

}  // namespace

std::unique_ptr<Model> make_model(const ModelSpec& spec) {
  const std::string accepted =
      "(accepted: lenet5, resnet20, resnet32, resnet44, resnet56, resnet110, resnet<6n+2>, "
      "vgg11, mlp)";
  if (spec.in_c <= 0 || spec.in_h <= 0 || spec.in_w <= 0)
    throw std::invalid_argument("make_model: input shape " + std::to_string(spec.in_c) + "x" +
                                std::to_string(spec.in_h) + "x" + std::to_string(spec.in_w) +
                                " must be positive (e.g. 1x28x28 or 3x32x32)");
  if (spec.num_classes < 1)
    throw std::invalid_argument("make_model: num_classes " + std::to_string(spec.num_classes) +
                                " must be >= 1");
  if (spec.groups > 0 && spec.group_size > 0)
    throw std::invalid_argument("make_model: set at most one of groups (" +
                                std::to_string(spec.groups) + ") and group_size (" +
                                std::to_string(spec.group_size) + ")");
  if (spec.groups < 0 || spec.group_size < 0)
    throw std::invalid_argument("make_model: groups and group_size must be >= 0");
  if (spec.shortcut != "zeropad" && spec.shortcut != "conv1x1")
    throw std::invalid_argument("make_model: unknown shortcut '" + spec.shortcut +
                                "' (accepted: zeropad, conv1x1)");

  const int64_t depth = resnet_depth(spec.name);
  const bool is_resnet = spec.name.rfind("resnet", 0) == 0;
  if (!is_resnet && spec.name != "lenet5" && spec.name != "vgg11" && spec.name != "mlp")
    throw std::invalid_argument("make_model: unknown model '" + spec.name + "' " + accepted);
  if (is_resnet && (depth < 8 || (depth - 2) % 6 != 0))
    throw std::invalid_argument("make_model: '" + spec.name +
                                "' is not a CIFAR ResNet depth 6n+2 >= 8 " + accepted);

  const std::string norm_name = spec.norm.empty() ? (is_resnet ? "batch" : "none") : spec.norm;
  const Norm norm = parse_norm(norm_name);
  if (spec.name == "mlp" && norm != Norm::kNone)
    throw std::invalid_argument("make_model: model 'mlp' takes no norm, got '" + norm_name +
                                "' (accepted: none)");
  if (spec.precision != "fp32" && spec.precision != "int8")
    throw std::invalid_argument("make_model: unknown precision '" + spec.precision +
                                "' (accepted: fp32, int8)");
  std::shared_ptr<QuantContext> quant;
  if (spec.precision == "int8") {
    quant = std::make_shared<QuantContext>();
    quant->stochastic_activations = spec.stochastic_activations;
  }
  const Builder b{spec, norm, spec.name == "lenet5", quant};
  const Shape3 input{spec.in_c, spec.in_h, spec.in_w};
  try {
    std::unique_ptr<Sequential> net;
    if (spec.name == "lenet5") {
      net = build_lenet5(spec, b);
    } else if (is_resnet) {
      net = build_resnet(spec, b, depth);
    } else if (spec.name == "vgg11") {
      net = build_vgg11(spec, b);
    } else {
      net = build_mlp(spec, b);
    }
    std::string full = spec.name;
    if (norm != Norm::kNone) full += "-" + norm_name;
    if (quant) full += "-int8";
    return std::make_unique<Model>(full, input, spec.num_classes, std::move(net), quant);
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    if (msg.rfind("make_model", 0) == 0) throw;
    throw std::invalid_argument("make_model: model '" + spec.name + "' does not fit input " +
                                input.str() + ": " + msg);
  }
}

}  // namespace spush::nets

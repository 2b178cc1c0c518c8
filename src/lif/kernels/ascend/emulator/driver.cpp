// Runs the real LIF operators on the emulator: the op_host tiling function (reached through the op's
// registration), then the kernel once per core, cores in order. Built once per storage dtype (DTYPE_X).
//
//   driver forward|backward N C H W WINDOW AXIS CORES DIR
//
// DIR holds x.bin (and dout.bin for backward) in the dtype, tau.bin/vth.bin as float32; results are written
// there (out.bin | dx.bin, dtau_parts.bin, dvth_parts.bin) and one JSON line goes to stdout: the launch
// (block dim, workspace, tiling), the registered signature and the emulator's counters.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernel_operator.h"
#include "lif_scan_tiling.h"
#include "register/op_def_registry.h"

extern "C" void lif_scan_custom(GM_ADDR x, GM_ADDR tau, GM_ADDR vth, GM_ADDR out, GM_ADDR workspace,
                                GM_ADDR tiling);
extern "C" void lif_scan_grad_custom(GM_ADDR dout, GM_ADDR x, GM_ADDR tau, GM_ADDR vth, GM_ADDR dx,
                                     GM_ADDR dtau_parts, GM_ADDR dvth_parts, GM_ADDR workspace, GM_ADDR tiling);

namespace {

constexpr size_t kPartSlots = 64;

[[noreturn]] void Usage(const char *why) {
  std::fprintf(stderr, "driver: %s\nusage: driver forward|backward N C H W WINDOW AXIS CORES DIR\n", why);
  std::exit(2);
}

template <typename T>
std::vector<T> ReadFile(const std::string &path, size_t count) {
  std::vector<T> data(count);
  FILE *f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) Usage(("cannot open " + path).c_str());
  if (std::fread(data.data(), sizeof(T), count, f) != count) Usage(("short file " + path).c_str());
  std::fclose(f);
  return data;
}

template <typename T>
void WriteFile(const std::string &path, const std::vector<T> &data) {
  FILE *f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || std::fwrite(data.data(), sizeof(T), data.size(), f) != data.size()) {
    Usage(("cannot write " + path).c_str());
  }
  std::fclose(f);
}

std::string Names(const std::vector<ops::OpParamDef> &params) {
  std::string s;
  for (const auto &p : params) s += (s.empty() ? "\"" : ", \"") + p.name + "\"";
  return "[" + s + "]";
}

}  // namespace

int main(int argc, char **argv) {
  if (argc != 10) Usage("wrong number of arguments");
  const std::string mode = argv[1];
  const bool backward = mode == "backward";
  if (!backward && mode != "forward") Usage("the first argument is forward or backward");
  const int64_t n = std::atoll(argv[2]), c = std::atoll(argv[3]), h = std::atoll(argv[4]), w = std::atoll(argv[5]);
  const int64_t window = std::atoll(argv[6]), axis = std::atoll(argv[7]);
  emu::platform::cores() = static_cast<uint32_t>(std::atoi(argv[8]));
  const std::string dir = argv[9];
  const size_t count = static_cast<size_t>(n * c * h * w);
  using T = DTYPE_X;
  const bool fp16 = sizeof(T) == 2;

  const char *op_name = backward ? "LifScanGradCustom" : "LifScanCustom";
  auto found = ops::Registry().find(op_name);
  if (found == ops::Registry().end() || found->second->aicore.tiling == nullptr) Usage("operator not registered");
  ops::OpDef *def = found->second;

  gert::TilingContext context;
  const gert::Shape x_shape{n, c, h, w};
  const gert::Shape scalar_shape{1};
  const std::vector<gert::Shape> inputs = backward
      ? std::vector<gert::Shape>{x_shape, x_shape, scalar_shape, scalar_shape}
      : std::vector<gert::Shape>{x_shape, scalar_shape, scalar_shape};
  for (size_t i = 0; i < inputs.size(); ++i) {
    context.shapes.emplace_back(inputs[i]);
    gert::CompileTimeTensorDesc desc;
    desc.dtype = (i < (backward ? 2u : 1u) && fp16) ? ge::DT_FLOAT16 : ge::DT_FLOAT;
    context.descs.push_back(desc);
  }
  context.attrs.ints = {window, axis};
  if (def->aicore.tiling(&context) != ge::GRAPH_SUCCESS) {
    std::printf("{\"tiling\": \"GRAPH_FAILED\"}\n");
    return 4;
  }

  std::vector<T> x = ReadFile<T>(dir + "/x.bin", count);
  std::vector<float> tau = ReadFile<float>(dir + "/tau.bin", 1);
  std::vector<float> vth = ReadFile<float>(dir + "/vth.bin", 1);
  std::vector<T> dout = backward ? ReadFile<T>(dir + "/dout.bin", count) : std::vector<T>();
  std::vector<T> result(count);
  std::vector<float> dtau_parts(kPartSlots, std::nanf("")), dvth_parts(kPartSlots, std::nanf(""));  // garbage
  std::vector<uint8_t> workspace(context.workspaces.at(0));
  std::vector<uint8_t> tiling(context.tiling.bytes, context.tiling.bytes + context.tiling.GetDataSize());
  emu::RegisterGm(x.data(), count * sizeof(T), "x");
  emu::RegisterGm(tau.data(), sizeof(float), "tau");
  emu::RegisterGm(vth.data(), sizeof(float), "vth");
  emu::RegisterGm(result.data(), count * sizeof(T), backward ? "dx" : "out");
  emu::RegisterGm(workspace.data(), workspace.size(), "workspace");
  emu::RegisterGm(tiling.data(), tiling.size(), "tiling");
  if (backward) {
    emu::RegisterGm(dout.data(), count * sizeof(T), "dout");
    emu::RegisterGm(dtau_parts.data(), kPartSlots * sizeof(float), "dtau_parts");
    emu::RegisterGm(dvth_parts.data(), kPartSlots * sizeof(float), "dvth_parts");
  }
  auto gm = [](const void *p) { return reinterpret_cast<GM_ADDR>(const_cast<void *>(p)); };

  const uint32_t blocks = context.block_dim;
  if (blocks == 0 || blocks > kPartSlots) Usage("tiling set a block dim outside [1, 64]");
  for (uint32_t b = 0; b < blocks; ++b) {
    emu::BeginBlock(b, blocks);
    if (backward) {
      lif_scan_grad_custom(gm(dout.data()), gm(x.data()), gm(tau.data()), gm(vth.data()), gm(result.data()),
                           gm(dtau_parts.data()), gm(dvth_parts.data()), gm(workspace.data()), gm(tiling.data()));
    } else {
      lif_scan_custom(gm(x.data()), gm(tau.data()), gm(vth.data()), gm(result.data()), gm(workspace.data()),
                      gm(tiling.data()));
    }
  }

  WriteFile(dir + (backward ? "/dx.bin" : "/out.bin"), result);
  if (backward) {
    WriteFile(dir + "/dtau_parts.bin", dtau_parts);
    WriteFile(dir + "/dvth_parts.bin", dvth_parts);
  }
  const optiling::LifScanTilingData &td = *reinterpret_cast<const optiling::LifScanTilingData *>(tiling.data());
  const emu::Stats &st = emu::S().stats;
  std::string attrs;
  for (const auto &a : def->attrs) attrs += (attrs.empty() ? "\"" : ", \"") + a.name + "\"";
  std::printf(
      "{\"block_dim\": %u, \"workspace\": %zu, \"need_atomic\": %s, \"tiles_per_window\": %u, \"lane_tile\": %u, "
      "\"pos_tile\": %u, \"items\": %u, \"inputs\": %s, \"outputs\": %s, \"attrs\": [%s], \"scalar\": %llu, "
      "\"vector\": %llu, \"repeats\": %llu, \"copies\": %llu, \"gm_bytes\": %llu, \"barriers\": %llu, "
      "\"ub_peak\": %u}\n",
      blocks, context.workspaces.at(0), context.need_atomic ? "true" : "false", td.windowChunks, td.laneTile,
      td.posTile, td.totalItems, Names(def->inputs).c_str(), Names(def->outputs).c_str(), attrs.c_str(),
      (unsigned long long)st.scalar, (unsigned long long)st.vector, (unsigned long long)st.repeats,
      (unsigned long long)st.copies, (unsigned long long)st.gm_bytes, (unsigned long long)st.barriers, st.ub_peak);
  return 0;
}

// Calls the GetWorkSpaceSize callback that MindSpore generated and compiled for an aclnn operator, as
// MindSpore's Ascend kernel does: one void* per call input (a tensor handle, or a pointer to the int64 value
// of a scalar input), one per output. In place of aclnn<Op>GetWorkspaceSize it hands the callback a recorder
// that prints what the operator would receive, one argument per line:
//   T<i> / O<i>   the i-th input / output tensor handle,   an integer   a scalar argument's value.
//
// Usage: call_callback CALLBACK.so SYMBOL OUTPUTS INPUT...   with INPUT "T" for a tensor, an integer for a scalar.
//
// The recorder takes 16 integer-class arguments: on x86-64 and AArch64 Linux, pointers and int64_t are passed
// in the same registers/stack slots, so it sees the callback's arguments whatever their mix.
#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

constexpr int kMaxArgs = 16;
int g_tensors[kMaxArgs];  // handles: their addresses identify the tensors
int g_outputs[kMaxArgs];
int64_t g_scalars[kMaxArgs];
uint64_t g_workspace_size = 0;
void *g_executor = nullptr;
int g_arg_count = 0;  // how many arguments the recorder prints (inputs + outputs + 2)

std::string Describe(uintptr_t value) {
  for (int i = 0; i < kMaxArgs; ++i) {
    if (value == reinterpret_cast<uintptr_t>(&g_tensors[i])) return "T" + std::to_string(i);
    if (value == reinterpret_cast<uintptr_t>(&g_outputs[i])) return "O" + std::to_string(i);
  }
  if (value == reinterpret_cast<uintptr_t>(&g_workspace_size)) return "workspaceSize";
  if (value == reinterpret_cast<uintptr_t>(&g_executor)) return "executor";
  return std::to_string(static_cast<int64_t>(value));
}

int Recorder(uintptr_t a0, uintptr_t a1, uintptr_t a2, uintptr_t a3, uintptr_t a4, uintptr_t a5, uintptr_t a6,
             uintptr_t a7, uintptr_t a8, uintptr_t a9, uintptr_t a10, uintptr_t a11, uintptr_t a12, uintptr_t a13,
             uintptr_t a14, uintptr_t a15) {
  const uintptr_t args[kMaxArgs] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15};
  for (int i = 0; i < g_arg_count; ++i) std::printf("%s\n", Describe(args[i]).c_str());
  return 0;
}

}  // namespace

using Callback = int (*)(void *, std::vector<void *>, std::vector<void *>, uint64_t *, void **);

int main(int argc, char **argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s CALLBACK.so SYMBOL OUTPUTS INPUT...\n", argv[0]);
    return 2;
  }
  void *library = dlopen(argv[1], RTLD_NOW);
  if (library == nullptr) {
    std::fprintf(stderr, "error: %s\n", dlerror());
    return 1;
  }
  auto callback = reinterpret_cast<Callback>(dlsym(library, argv[2]));
  if (callback == nullptr) {
    std::fprintf(stderr, "error: no symbol %s in %s\n", argv[2], argv[1]);
    return 1;
  }
  const int outputs = std::atoi(argv[3]);
  std::vector<void *> input_ptrs;
  for (int i = 4; i < argc; ++i) {
    const int index = i - 4;
    if (std::string(argv[i]) == "T") {
      input_ptrs.push_back(&g_tensors[index]);
    } else {
      g_scalars[index] = std::strtoll(argv[i], nullptr, 10);
      input_ptrs.push_back(&g_scalars[index]);
    }
  }
  std::vector<void *> output_ptrs;
  for (int i = 0; i < outputs; ++i) output_ptrs.push_back(&g_outputs[i]);
  g_arg_count = static_cast<int>(input_ptrs.size()) + outputs + 2;
  if (g_arg_count > kMaxArgs) {
    std::fprintf(stderr, "error: more than %d arguments\n", kMaxArgs);
    return 2;
  }
  return callback(reinterpret_cast<void *>(&Recorder), input_ptrs, output_ptrs, &g_workspace_size, &g_executor);
}

// The attribute interface MindSpore passes to aot custom kernels as `extra` (an `AotExtra *`).
//
// MindSpore implements this class inside libmindspore (`AotExtraImpl`) and hands our kernel a pointer to it;
// we only call its virtual functions. The header shipped in the wheel cannot be used for that: it includes the
// framework's internal headers. So this file restates the ABI: the class must have the same virtual functions
// in the same order (they fix the vtable slots) and the same data members (they fix the layout). Compile with
// -D_GLIBCXX_USE_CXX11_ABI=0, the std::string ABI of the MindSpore wheels.
//
// Layout checked against MindSpore 2.10 (mindspore/include/mindspore/ccsrc/utils/custom_aot_extra.h):
//   vtable: ~AotExtra (2 slots), HasAttr, GetAttrBool, GetAttrInt, GetAttrFloat, GetAttrStr,
//           GetAttrIntVec, GetAttrFloatVec, GetAttrInt2DVec, GetAttrFloat2DVec
//   data:   std::vector<size_t> workspace_, AotKernelData *kernel_data_
#ifndef SNN_MLP_LIF_AOT_EXTRA_H_
#define SNN_MLP_LIF_AOT_EXTRA_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

class AotKernelData {
 public:
  virtual ~AotKernelData() = default;
};

class AotExtra {
 public:
  virtual ~AotExtra() = default;
  virtual bool HasAttr(std::string name) = 0;

  // Integer attribute set on the primitive (CustomRegOp ... .attr(name, "required", "int", value=...)).
  // Callers check HasAttr first: a missing attribute makes MindSpore throw across the C boundary.
  int64_t IntAttr(const std::string &name) { return GetAttrInt(name); }

  // Device scratch buffers (bytes each) MindSpore allocates and appends to the kernel's params; set in <Name>Init.
  void SetWorkSpace(const std::vector<size_t> &workspace) { workspace_ = workspace; }

 private:
  // Never called here; declared only so that GetAttrInt lands in its vtable slot.
  virtual bool GetAttrBool(std::string name) = 0;
  virtual int64_t GetAttrInt(std::string name) = 0;
  virtual float GetAttrFloat(std::string name) = 0;
  virtual std::string GetAttrStr(std::string name) = 0;
  virtual std::vector<int64_t> GetAttrIntVec(std::string name) = 0;
  virtual std::vector<float> GetAttrFloatVec(std::string name) = 0;
  virtual std::vector<std::vector<int64_t>> GetAttrInt2DVec(std::string name) = 0;
  virtual std::vector<std::vector<float>> GetAttrFloat2DVec(std::string name) = 0;

  std::vector<size_t> workspace_;
  AotKernelData *kernel_data_{nullptr};
};

#endif  // SNN_MLP_LIF_AOT_EXTRA_H_

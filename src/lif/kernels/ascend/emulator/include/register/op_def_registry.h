// Emulation of the CANN host API an operator's op_host file uses (register/op_def_registry.h): graph status and
// data types (ge), the tiling and inference contexts (gert) and the OpDef builder (ops). The builder records
// each operator's inputs, outputs, attributes and tiling function, so the driver can call the real tiling
// function through the real registration and report the registered signature.
#ifndef SNN_MLP_ASCEND_EMULATOR_OP_DEF_REGISTRY_H_
#define SNN_MLP_ASCEND_EMULATOR_OP_DEF_REGISTRY_H_

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include "tiling/platform/platform_ascendc.h"

namespace ge {
using graphStatus = uint32_t;
constexpr graphStatus GRAPH_SUCCESS = 0;
constexpr graphStatus GRAPH_FAILED = 0xFFFFFFFF;
enum DataType { DT_FLOAT = 0, DT_FLOAT16 = 1, DT_INT8 = 2, DT_INT32 = 3, DT_INT64 = 9, DT_BF16 = 27 };
enum Format { FORMAT_NCHW = 0, FORMAT_NHWC = 1, FORMAT_ND = 2 };
}  // namespace ge

namespace gert {

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) : dims_(dims) {}
  size_t GetDimNum() const { return dims_.size(); }
  int64_t GetDim(size_t i) const { return i < dims_.size() ? dims_[i] : 0; }
  void SetDimNum(size_t n) { dims_.resize(n); }
  void SetDim(size_t i, int64_t v) { dims_.at(i) = v; }
  int64_t GetShapeSize() const {
    int64_t n = 1;
    for (int64_t d : dims_) n *= d;
    return n;
  }
  bool operator==(const Shape &o) const { return dims_ == o.dims_; }

 private:
  std::vector<int64_t> dims_;
};

class StorageShape {
 public:
  StorageShape() = default;
  explicit StorageShape(const Shape &s) : shape_(s) {}
  const Shape &GetStorageShape() const { return shape_; }
  const Shape &GetOriginShape() const { return shape_; }

 private:
  Shape shape_;
};

class CompileTimeTensorDesc {
 public:
  ge::DataType GetDataType() const { return dtype; }
  ge::DataType dtype = ge::DT_FLOAT;
};

class RuntimeAttrs {
 public:
  template <typename T>
  const T *GetAttrPointer(size_t i) const {
    return i < ints.size() ? reinterpret_cast<const T *>(&ints[i]) : nullptr;
  }
  size_t GetAttrNum() const { return ints.size(); }
  std::vector<int64_t> ints;
};

class TilingData {
 public:
  void *GetData() { return bytes; }
  size_t GetCapacity() const { return sizeof(bytes); }
  void SetDataSize(size_t n) { size = n; }
  size_t GetDataSize() const { return size; }
  alignas(8) uint8_t bytes[2048] = {};
  size_t size = 0;
};

// What a tiling function reads and sets; the driver fills the inputs and reads the results.
class TilingContext {
 public:
  const StorageShape *GetInputShape(size_t i) const { return i < shapes.size() ? &shapes[i] : nullptr; }
  const CompileTimeTensorDesc *GetInputDesc(size_t i) const { return i < descs.size() ? &descs[i] : nullptr; }
  const RuntimeAttrs *GetAttrs() const { return &attrs; }
  fe::PlatFormInfos *GetPlatformInfo() { return &platform; }
  void SetBlockDim(uint32_t n) { block_dim = n; }
  uint32_t GetBlockDim() const { return block_dim; }
  TilingData *GetRawTilingData() { return &tiling; }
  size_t *GetWorkspaceSizes(size_t n) {
    workspaces.assign(n, 0);
    return workspaces.data();
  }
  void SetTilingKey(uint64_t key) { tiling_key = key; }
  void SetNeedAtomic(bool v) { need_atomic = v; }
  size_t GetComputeNodeInputNum() const { return shapes.size(); }

  std::vector<StorageShape> shapes;
  std::vector<CompileTimeTensorDesc> descs;
  RuntimeAttrs attrs;
  fe::PlatFormInfos platform;
  uint32_t block_dim = 0;
  TilingData tiling;
  std::vector<size_t> workspaces;
  uint64_t tiling_key = 0;
  bool need_atomic = false;
};

class InferShapeContext {
 public:
  const Shape *GetInputShape(size_t i) const { return i < inputs.size() ? &inputs[i] : nullptr; }
  Shape *GetOutputShape(size_t i) { return i < outputs.size() ? &outputs[i] : nullptr; }
  const RuntimeAttrs *GetAttrs() const { return &attrs; }
  std::vector<Shape> inputs, outputs;
  RuntimeAttrs attrs;
};

class InferDataTypeContext {
 public:
  ge::DataType GetInputDataType(size_t i) const { return i < inputs.size() ? inputs[i] : ge::DT_FLOAT; }
  ge::graphStatus SetOutputDataType(size_t i, ge::DataType t) {
    if (outputs.size() <= i) outputs.resize(i + 1);
    outputs[i] = t;
    return ge::GRAPH_SUCCESS;
  }
  std::vector<ge::DataType> inputs, outputs;
};

}  // namespace gert

namespace ops {

enum Option { IGNORE = 0, OPTIONAL = 1, REQUIRED = 2, DYNAMIC = 3 };
using TilingFunc = ge::graphStatus (*)(gert::TilingContext *);
using InferShapeFunc = ge::graphStatus (*)(gert::InferShapeContext *);
using InferDataTypeFunc = ge::graphStatus (*)(gert::InferDataTypeContext *);

// Every builder call returns the builder, as in CANN; arguments that only matter to the real build are kept
// no further than needed to report the signature.
class OpParamDef {
 public:
  explicit OpParamDef(const char *n) : name(n) {}
  OpParamDef &ParamType(Option o) { option = o; return *this; }
  OpParamDef &DataType(std::vector<ge::DataType> v) { dtypes = v; return *this; }
  OpParamDef &DataTypeList(std::vector<ge::DataType> v) { dtypes = v; return *this; }
  OpParamDef &Format(std::vector<ge::Format> v) { formats = v; return *this; }
  OpParamDef &FormatList(std::vector<ge::Format> v) { formats = v; return *this; }
  OpParamDef &UnknownShapeFormat(std::vector<ge::Format> v) { formats = v; return *this; }
  template <typename V>
  OpParamDef &InitValue(V) { has_init_value = true; return *this; }
  OpParamDef &ValueDepend(Option) { return *this; }
  OpParamDef &Follow(const char *) { return *this; }
  OpParamDef &AutoContiguous() { return *this; }
  OpParamDef &IgnoreContiguous() { return *this; }
  OpParamDef &Scalar() { return *this; }
  std::string name;
  Option option = REQUIRED;
  std::vector<ge::DataType> dtypes;
  std::vector<ge::Format> formats;
  bool has_init_value = false;
};

class OpAttrDef {
 public:
  explicit OpAttrDef(const char *n) : name(n) {}
  OpAttrDef &AttrType(Option o) { option = o; return *this; }
  OpAttrDef &Int() { type = "int"; return *this; }
  OpAttrDef &Int(int64_t) { type = "int"; return *this; }
  OpAttrDef &Float() { type = "float"; return *this; }
  OpAttrDef &Float(float) { type = "float"; return *this; }
  OpAttrDef &Bool() { type = "bool"; return *this; }
  OpAttrDef &Bool(bool) { type = "bool"; return *this; }
  OpAttrDef &String() { type = "str"; return *this; }
  OpAttrDef &String(const char *) { type = "str"; return *this; }
  OpAttrDef &ListInt() { type = "listInt"; return *this; }
  OpAttrDef &ListInt(std::vector<int64_t>) { type = "listInt"; return *this; }
  std::string name;
  Option option = REQUIRED;
  std::string type;
};

class OpAICoreConfig {
 public:
  OpAICoreConfig &DynamicCompileStaticFlag(bool) { return *this; }
  OpAICoreConfig &DynamicFormatFlag(bool) { return *this; }
  OpAICoreConfig &DynamicRankSupportFlag(bool) { return *this; }
  OpAICoreConfig &DynamicShapeSupportFlag(bool) { return *this; }
  OpAICoreConfig &NeedCheckSupportFlag(bool) { return *this; }
  OpAICoreConfig &PrecisionReduceFlag(bool) { return *this; }
};

class OpAICoreDef {
 public:
  OpAICoreDef &SetTiling(TilingFunc f) { tiling = f; return *this; }
  OpAICoreDef &AddConfig(const char *soc) { socs.push_back(soc); return *this; }
  OpAICoreDef &AddConfig(const char *soc, OpAICoreConfig &) { socs.push_back(soc); return *this; }
  TilingFunc tiling = nullptr;
  std::vector<std::string> socs;
};

class OpDef;
inline std::map<std::string, OpDef *> &Registry() {
  static std::map<std::string, OpDef *> registry;
  return registry;
}

class OpDef {
 public:
  explicit OpDef(const char *n) : name(n) {}
  virtual ~OpDef() = default;
  OpParamDef &Input(const char *n) { return Find(inputs, n); }
  OpParamDef &Output(const char *n) { return Find(outputs, n); }
  OpAttrDef &Attr(const char *n) {
    for (auto &a : attrs) if (a.name == n) return a;
    attrs.emplace_back(n);
    return attrs.back();
  }
  OpDef &SetInferShape(InferShapeFunc f) { infer_shape = f; return *this; }
  OpDef &SetInferDataType(InferDataTypeFunc f) { infer_dtype = f; return *this; }
  OpDef &SetInferShapeRange(void *) { return *this; }
  OpAICoreDef &AICore() { return aicore; }

  std::string name;
  std::vector<OpParamDef> inputs, outputs;
  std::vector<OpAttrDef> attrs;
  InferShapeFunc infer_shape = nullptr;
  InferDataTypeFunc infer_dtype = nullptr;
  OpAICoreDef aicore;

 private:
  static OpParamDef &Find(std::vector<OpParamDef> &v, const char *n) {
    for (auto &p : v) if (p.name == n) return p;
    v.reserve(16);  // builders hold references while chaining
    v.emplace_back(n);
    return v.back();
  }
};

template <typename Op>
struct Registrar {
  explicit Registrar(const char *name) { Registry()[name] = new Op(name); }
};

}  // namespace ops

#define OP_ADD(op) static ::ops::Registrar<::ops::op> g_op_registrar_##op(#op)

#endif  // SNN_MLP_ASCEND_EMULATOR_OP_DEF_REGISTRY_H_

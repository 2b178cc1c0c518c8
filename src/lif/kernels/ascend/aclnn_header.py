"""The aclnn header CANN generates for an AscendC operator, derived here from its op_host ``OpDef``.

When ``custom_compiler`` (CANN's msopgen project) builds an operator, it writes
``op_api/include/aclnn_<snake_name>.h`` declaring two functions:

    aclnnStatus aclnn<Op>GetWorkspaceSize(<inputs>, <attributes>, <outputs>,
                                          uint64_t *workspaceSize, aclOpExecutor **executor);
    aclnnStatus aclnn<Op>(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
                          aclrtStream stream);

Inputs and outputs come in their ``OpDef`` order as ``const aclTensor *`` (``const aclTensorList *`` when
DYNAMIC), attributes in theirs by type (Int ``int64_t``, Float ``double``, Bool ``bool``, String ``char *``,
ListInt ``const aclIntArray *``, ListFloat ``const aclFloatArray *``, ListBool ``const aclBoolArray *``).
Names are camelCased, an optional input gets the suffix ``Optional`` and an output named like an input the
suffix ``Out``; MindSpore reads only the types and their order.

MindSpore 2.10 on Ascend reads this header (``CustomInfoGenerator`` in
``mindspore/ops/operations/_custom_ops_utils.py``) to learn how to call the operator: every parameter before
the outputs is one argument of the ``ops.Custom`` call. Generating it here lets
``tests/test_ascend_contract.py`` run MindSpore's own reader on it without a CANN toolkit.

Run as a script to print the headers: ``python -m src.lif.kernels.ascend.aclnn_header [op_host.cpp] [-o DIR]``.
"""
import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ...custom import aclnn_header_name

__all__ = ["OpDef", "parse_op_defs", "aclnn_header", "write_headers", "OP_HOST_SOURCE"]

OP_HOST_SOURCE = Path(__file__).resolve().parent / "op_host" / "lif_scan_custom.cpp"

_ATTR_TYPES = {"Int": "int64_t", "Float": "double", "Bool": "bool", "String": "char *",
               "ListInt": "const aclIntArray *", "ListFloat": "const aclFloatArray *",
               "ListBool": "const aclBoolArray *"}


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "input", "attr" or "output"
    param_type: str  # REQUIRED, OPTIONAL or DYNAMIC
    value_type: str = ""  # attributes: Int, Float, ...


@dataclass(frozen=True)
class OpDef:
    name: str
    inputs: tuple
    attrs: tuple
    outputs: tuple


def _strip_comments(source):
    source = re.sub(r"/\*.*?\*/", " ", source, flags=re.DOTALL)
    return re.sub(r"//[^\n]*", " ", source)


def parse_op_defs(source):
    """The ``OpDef`` classes of op_host C++ ``source``, in file order, as ``OpDef`` records.

    Understands the ``this->Input/Output/Attr("name")...`` chains of CANN's registration API; a chain it
    cannot read (an unknown attribute type, no ParamType/AttrType) raises ValueError naming it.
    """
    source = _strip_comments(source)
    ops = []
    for match in re.finditer(r"class\s+(\w+)\s*:\s*public\s+OpDef\s*\{", source):
        body = source[match.end():source.index("};", match.end())]
        params = {"input": [], "attr": [], "output": []}
        for chain in re.finditer(r"this->(Input|Output|Attr)\(\s*\"(\w+)\"\s*\)([^;]*);", body):
            kind, name, calls = chain.group(1).lower(), chain.group(2), chain.group(3)
            mode = re.search(r"\.(?:ParamType|AttrType)\(\s*(REQUIRED|OPTIONAL|DYNAMIC)\s*\)", calls)
            if mode is None:
                raise ValueError(f"{match.group(1)}.{name}: no ParamType/AttrType in '{calls.strip()}'")
            value_type = ""
            if kind == "attr":
                types = [t for t in re.findall(r"\.(\w+)\(", calls) if t in _ATTR_TYPES]
                if len(types) != 1:
                    raise ValueError(f"{match.group(1)}.{name}: cannot tell the attribute type of '{calls.strip()}'")
                value_type = types[0]
            params[kind].append(Param(name, kind, mode.group(1), value_type))
        ops.append(OpDef(match.group(1), tuple(params["input"]), tuple(params["attr"]), tuple(params["output"])))
    if not ops:
        raise ValueError("no 'class ... : public OpDef' in the op_host source")
    return ops


def _camel(name):
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _declaration(param, input_names):
    name = _camel(param.name)
    if param.kind == "attr":
        c_type = _ATTR_TYPES[param.value_type]
    else:
        c_type = "const aclTensorList *" if param.param_type == "DYNAMIC" else "const aclTensor *"
        if param.kind == "input" and param.param_type == "OPTIONAL":
            name += "Optional"
        if param.kind == "output" and param.name in input_names:
            name += "Out"
    return c_type + ("" if c_type.endswith("*") else " ") + name, name


def aclnn_header(op):
    """Text of the aclnn header of ``op`` in the layout of CANN's generated headers."""
    input_names = {p.name for p in op.inputs}
    params = [_declaration(p, input_names) for p in op.inputs + op.attrs + op.outputs]
    guard = aclnn_header_name(op.name)[:-2].upper() + "_H_"
    notes = [f" * {name} : {p.param_type.lower()}" for (_, name), p in zip(params, op.inputs + op.attrs + op.outputs)]
    args = ",\n".join(f"    {decl}" for decl, _ in params + [("uint64_t *workspaceSize", ""),
                                                              ("aclOpExecutor **executor", "")])
    return "\n".join([
        "/*", " * Generated from the OpDef of " + op.name + " by src/lif/kernels/ascend/aclnn_header.py.", " */",
        "", f"#ifndef {guard}", f"#define {guard}", "", '#include "aclnn/acl_meta.h"', "",
        "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
        f"/* function: aclnn{op.name}GetWorkspaceSize", " * parameters :", *notes,
        " * workspaceSize : size of workspace(output).", " * executor : executor context(output).", " */",
        '__attribute__((visibility("default")))',
        f"aclnnStatus aclnn{op.name}GetWorkspaceSize(\n{args});", "",
        f"/* function: aclnn{op.name}", " * parameters :", " * workspace : workspace memory addr(input).",
        " * workspaceSize : size of workspace(input).", " * executor : executor context(input).",
        " * stream : acl stream.", " */", '__attribute__((visibility("default")))',
        f"aclnnStatus aclnn{op.name}(\n    void *workspace,\n    uint64_t workspaceSize,\n"
        "    aclOpExecutor *executor,\n    aclrtStream stream);", "",
        "#ifdef __cplusplus", "}", "#endif", "", f"#endif  // {guard}", ""])


def write_headers(source_path, directory):
    """Write the header of every OpDef of ``source_path`` into ``directory``; returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for op in parse_op_defs(Path(source_path).read_text(encoding="utf-8")):
        path = directory / aclnn_header_name(op.name)
        path.write_text(aclnn_header(op), encoding="utf-8")
        paths.append(path)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m src.lif.kernels.ascend.aclnn_header",
        description="Derive the aclnn headers CANN generates from the OpDef classes of an op_host source.")
    parser.add_argument("source", nargs="?", default=str(OP_HOST_SOURCE),
                        help="op_host C++ file (default: the LIF operators' %(default)s)")
    parser.add_argument("-o", "--output-dir", help="write aclnn_<op>.h files here instead of printing them")
    args = parser.parse_args(argv)
    try:
        if args.output_dir:
            for path in write_headers(args.source, args.output_dir):
                print(path)
        else:
            for op in parse_op_defs(Path(args.source).read_text(encoding="utf-8")):
                print(f"// ---- {aclnn_header_name(op.name)}\n{aclnn_header(op)}")
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

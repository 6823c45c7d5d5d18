// kdloss_torch: the generic binding of one entry point of the shape every kdloss entry point has
// (core/entry.hpp: an arguments struct, `E(args, mode, exec)`, `E_workspace_bytes(args)`, and
// `E_reserve_bytes(args)` where forward keeps state for backward). No torch headers: family files
// include it and may be compiled by nvcc.
//
// A binding is one `describe` function, written once for every element type, that names the fields of
// the arguments struct in the order Python passes them:
//
//   KDLOSS_TORCH_FAMILY(feature, m) {
//     kdloss_torch::bind<kdloss::DistanceLossArgs>(m, "feature_distance_loss", "kdloss_torch.distance_loss",
//         [](auto& a, auto& f) {
//           f.in("student", a.student);                 // tensors, in the Python order
//           f.in("teacher", a.teacher);
//           f.upstream(a.grad_out);                     // backward's upstream gradient
//           f.out("out", a.out, kdloss::Dims{});        // the value: a 0-dim tensor
//           f.grad("grad_student", a.grad_student, "student");  // d value / d student
//         },
//         KDLOSS_TORCH_ENTRY(kdloss::distance_loss));
//   }
//
// It runs twice: once at import on an empty Args<float>, where `f` records the names (the schema the
// Python side reads: kdloss_torch._C.feature_distance_loss.inputs, .grads, ...), and once per call on
// an Args<T> of the call's element type, where `f` fills each view: inputs from the tensors (dtype and
// device checked, no copies), outputs allocated through torch (shaped as `describe` says, which reads the
// inputs already filled and the options), gradient outputs only where Python asked for them (the others
// stay absent: kdloss::absent), the workspace from torch's allocator (CUDA caching allocator on the
// GPU), the current stream and torch's cuBLAS handle in the Exec. The GIL is released while the entry
// runs. In Python, kdloss_torch._function.Loss turns such an entry into an autograd Function.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "common.hpp"
#include "kdloss/core/entry.hpp"

namespace kdloss_torch {

/// One bound entry point: its schema and its call. Python sees it as kdloss_torch._C.<name>, called as
/// entry(mode, tensors, options=None, grad_out=None, want=[], reserve=None) -> {output name: tensor}.
struct Entry {
  std::string fn;                    ///< name in messages: "kdloss_torch.distance_loss"
  std::vector<std::string> inputs;   ///< tensor arguments, in the order Python passes them
  std::vector<bool> optional;        ///< per input: None allowed
  std::vector<std::string> outputs;  ///< value outputs ("out")
  std::vector<std::string> grads;    ///< gradient outputs ("grad_student") ...
  std::vector<std::string> grad_of;  ///< ... and the input each is the gradient of ("student")
  bool upstream = false;             ///< backward reads grad_out
  bool reserve = false;              ///< forward fills a reserve buffer that backward reads
  bool has_options = false;          ///< takes an options object (bound with kdloss_torch::Options)
  using Run = std::function<py::dict(const Entry&, kdloss::Mode, const py::sequence&, py::handle, py::handle,
                                     py::handle, const std::vector<std::string>&)>;
  Run run;
};

/// Registers the Python class of Entry (torch_glue.cpp, before the families).
void register_entry_class(py::module_& m);

/// What `describe` talks to: records names (schema pass) or fills the views of one call (call pass).
template <class T>
class Fields {
 public:
  struct Context {
    kdloss::Mode mode;
    const std::vector<Arg>* in;
    const py::sequence* tensors;
    const Arg* up;
    py::handle reserve;
    const std::vector<std::string>* want;
    py::dict* result;
  };
  explicit Fields(Entry& schema) : schema_(&schema) {}
  Fields(const Entry& entry, const Context& call) : entry_(&entry), call_(call) {}

  /// A tensor argument (`optional`: None leaves the view absent).
  void in(const char* name, View<const T>& view, bool optional = false) {
    if (schema_) {
      kdloss::detail::require(!schema_->inputs.empty() || !optional, schema_->fn,
                              ": internal: the first input decides dtype and device and cannot be optional");
      schema_->inputs.push_back(name);
      schema_->optional.push_back(optional);
      return;
    }
    view = (*call_.in)[next_++].template in<T>();
  }
  /// The upstream gradient of the value (read in backward only).
  void upstream(View<const T>& view) {
    if (schema_) {
      schema_->upstream = true;
      return;
    }
    if (call_.mode == kdloss::Mode::backward) view = call_.up->template in<T>();
  }
  /// A value output of `shape` (contiguous), written in forward and forward_backward.
  void out(const char* name, View<T>& view, const Dims& shape) {
    if (schema_) {
      schema_->outputs.push_back(name);
      return;
    }
    if (kdloss::writes_value(call_.mode)) keep(name, empty((*call_.in)[0], shape, name), view);
  }
  /// A value output shaped and strided like input `like` (a loss map of reduction none).
  void out_like(const char* name, View<T>& view, const char* like) {
    if (schema_) {
      schema_->outputs.push_back(name);
      return;
    }
    if (kdloss::writes_value(call_.mode)) keep(name, empty_like(tensor(like), name), view);
  }
  /// The gradient of input `of`, shaped and strided like it; allocated only when Python asks for it.
  void grad(const char* name, View<T>& view, const char* of) {
    if (schema_) {
      schema_->grads.push_back(name);
      schema_->grad_of.push_back(of);
      return;
    }
    if (!kdloss::writes_gradients(call_.mode) || !wanted(name)) return;
    keep(name, empty_like(tensor(of), name), view);
  }
  /// The reserve buffer: allocated (bytes(args) of it) in forward and forward_backward and returned as
  /// "reserve"; backward gets it back from Python. `bytes` is called after the inputs are filled.
  template <class Bytes>
  void reserve(kdloss::Reserve& r, Bytes&& bytes) {
    if (schema_) {
      schema_->reserve = true;
      return;
    }
    if (call_.mode == kdloss::Mode::backward) {
      if (!call_.reserve.is_none()) r = reserve_of(call_.reserve, entry_->fn.c_str(), "reserve");
      return;
    }
    py::object t = empty_reserve((*call_.in)[0].device, bytes());
    r = reserve_of(t, entry_->fn.c_str(), "reserve");
    (*call_.result)["reserve"] = t;
  }

 private:
  py::handle tensor(const char* input) const {
    for (std::size_t i = 0; i < entry_->inputs.size(); ++i) {
      if (entry_->inputs[i] != input) continue;
      kdloss::detail::require((*call_.in)[i].present, entry_->fn, ": argument '", input,
                              "' is None but its gradient or output was requested");
      return (*call_.tensors)[i];
    }
    kdloss::detail::fail(entry_->fn, ": internal: no input named '", input, "'");
  }
  bool wanted(const char* name) const {
    for (const auto& w : *call_.want)
      if (w == name) return true;
    return false;
  }
  void keep(const char* name, Output o, View<T>& view) {
    view = o.arg.template out<T>();
    (*call_.result)[name] = o.tensor;
  }

  Entry* schema_ = nullptr;
  const Entry* entry_ = nullptr;
  Context call_{};
  std::size_t next_ = 0;
};

namespace detail {
template <class A, class = void>
struct has_options : std::false_type {};
template <class A>
struct has_options<A, std::void_t<decltype(std::declval<A&>().options)>> : std::true_type {};
}  // namespace detail

/// Binds entry point `Args` as kdloss_torch._C.<name>: `describe(args, fields)` names its fields (see
/// the top of this file), `run(args, mode, exec)` runs it and `workspace(args)` sizes its workspace
/// (KDLOSS_TORCH_ENTRY(kdloss::E) writes both for an entry point E of the standard shape). When Args
/// has an `options` member, its type must be bound with kdloss_torch::Options first.
template <template <class> class Args, class Describe, class Run, class Workspace>
void bind(py::module_& m, const char* name, const char* fn, Describe describe, Run run, Workspace workspace) {
  Entry e;
  e.fn = fn;
  e.has_options = detail::has_options<Args<float>>::value;
  {
    Args<float> schema_args{};
    Fields<float> f(e);
    describe(schema_args, f);
  }
  kdloss::detail::require(!e.inputs.empty(), fn, ": internal: a binding needs at least one tensor input");
  e.run = [describe, run, workspace](const Entry& e, kdloss::Mode mode, const py::sequence& tensors,
                                     py::handle options, py::handle grad_out, py::handle reserve,
                                     const std::vector<std::string>& want) -> py::dict {
    const char* fn = e.fn.c_str();
    kdloss::detail::require(py::len(tensors) == e.inputs.size(), fn, ": internal: ", py::len(tensors),
                            " tensors for ", e.inputs.size(), " inputs");
    std::vector<Arg> in(e.inputs.size());
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = tensor_arg(tensors[i], fn, e.inputs[i].c_str(), e.optional[i]);
    const Arg up = tensor_arg(grad_out, fn, "grad_out", !(e.upstream && mode == kdloss::Mode::backward));
    for (std::size_t i = 1; i < in.size(); ++i) same_dtype(fn, in[0], in[i]);
    same_dtype(fn, in[0], up);
    kdloss_torch::Call call(fn, in[0].device);
    py::dict result;
    dispatch(fn, in[0], [&](auto tag) {
      using T = typename decltype(tag)::type;
      Args<T> args{};
      if constexpr (detail::has_options<Args<T>>::value) {
        using O = std::decay_t<decltype(args.options)>;
        if (!options.is_none()) {
          kdloss::detail::require(py::isinstance<O>(options), fn, ": argument 'options' must be a ",
                                  std::string(py::str(py::type::of<O>().attr("__name__"))), " but is ",
                                  std::string(py::str(py::type::of(options).attr("__name__"))));
          args.options = options.cast<O>();
        }
      }
      Fields<T> f(e, typename Fields<T>::Context{mode, &in, &tensors, &up, reserve, &want, &result});
      describe(args, f);
      const kdloss::Exec ex = call.exec(workspace_bytes([&] { return workspace(args); }));
      py::gil_scoped_release nogil;
      run(args, mode, ex);
    });
    return result;
  };
  m.attr(name) = py::cast(std::move(e));
}

/// The run and workspace functions of an entry point E of the standard shape, for bind().
#define KDLOSS_TORCH_ENTRY(entry)                                                              \
  [](const auto& a, ::kdloss::Mode mode, const ::kdloss::Exec& exec) { entry(a, mode, exec); }, \
      [](const auto& a) -> std::size_t { return entry##_workspace_bytes(a); }

/// An options struct as a Python class: Options<kdloss::SmoothL1Options>(m, "SmoothL1Options", "...")
/// .field("beta", &kdloss::SmoothL1Options::beta, "..."). Instances are made with keywords
/// (`_C.SmoothL1Options(beta=0.5)`, defaults from the C++ struct), read and written by attribute, and
/// print their fields; a binding whose Args has an `options` member takes one (None: the defaults).
template <class O>
class Options {
 public:
  Options(py::module_& m, const char* name, const char* doc)
      : cls_(m, name, doc), fields_(std::make_shared<std::vector<std::string>>()) {
    auto fields = fields_;
    const std::string type = name;
    cls_.def(py::init([](const py::kwargs& kwargs) {
               py::object o = py::cast(O{});
               for (const auto& [k, v] : kwargs) py::setattr(o, k, v);  // unknown names: AttributeError
               return o.cast<O>();
             }),
             "Options with the C++ defaults, set by keyword");
    cls_.def("__repr__", [fields, type](py::handle self) {
      std::string s = type + "(";
      for (std::size_t i = 0; i < fields->size(); ++i)
        s += (i ? ", " : "") + (*fields)[i] + "=" + std::string(py::repr(self.attr((*fields)[i].c_str())));
      return s + ")";
    });
    cls_.def_property_readonly_static("fields", [fields](py::handle) { return *fields; });
  }
  template <class F>
  Options& field(const char* name, F O::*member, const char* doc = "") {
    cls_.def_readwrite(name, member, doc);
    fields_->push_back(name);
    return *this;
  }

 private:
  py::class_<O> cls_;
  std::shared_ptr<std::vector<std::string>> fields_;
};

}  // namespace kdloss_torch

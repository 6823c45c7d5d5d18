// kdloss_torch: the generic binding of one entry point of the shape every kdloss entry point has
// (core/entry.hpp: an arguments struct, `E(args, mode, exec)`, `E_workspace_bytes(args)`, and
// `E_reserve_bytes(args)` where forward keeps state for backward). No torch headers: family files
// include it and may be compiled by nvcc.
//
// A binding is one `describe` function, written once for every element type, that names the fields of
// the arguments struct in the order Python passes them:
//
//   KDLOSS_TORCH_FAMILY(feature, m) {
//     kt::Options<kdloss::MseLossOptions>(m, "MseLossOptions", "options of mse_loss")
//         .field("reduction", &kdloss::MseLossOptions::reduction);
//     kt::bind<kdloss::MseLossArgs>(m, "feature_mse_loss", "kdloss_torch.mse_loss", [](auto& a, auto& f) {
//       f.in("student", a.student);                  // tensors, in the Python order
//       f.in("teacher", a.teacher);
//       f.upstream(a.grad_out);                      // backward's upstream gradient
//       f.out_reduced("out", a.out, a.options.reduction == kdloss::Reduction::none, "student");
//       f.grad("grad_student", a.grad_student, "student");  // d value / d student, shaped like it
//     }, KDLOSS_TORCH_ENTRY(kdloss::mse_loss));
//   }
//
// It runs twice: once at import on an empty Args<float>, where `f` records the names (the schema the
// Python side reads: kdloss_torch._C.feature_mse_loss.inputs, .grads, ...), and once per call on
// an Args<T> of the call's element type, where `f` fills each view: inputs from the tensors (dtype and
// device checked, no copies), outputs allocated through torch (shaped as `describe` says, which reads the
// inputs already filled and the options), gradient outputs only where Python asked for them (the others
// stay absent: kdloss::absent), the workspace from torch's allocator (CUDA caching allocator on the
// GPU), the current stream and torch's cuBLAS handle in the Exec. The GIL is released while the entry
// runs. In Python, kdloss_torch._function.Loss turns such an entry into an autograd Function.
//
// What `f` offers (each records its name in the schema pass and fills its field in the call pass):
//   in(name, view[, optional])       a tensor input; optional: None leaves the view absent
//   kept(name, view, output)         an input backward reads that is forward's value output `output`
//                                    (softmax's y): Python passes None in forward and the saved
//                                    output in backward; no gradient, not a Python argument
//   in_list(name, views, what)       a non-empty list of tensors (std::vector<View<const T>>): Python
//                                    passes a sequence; elements are named "name[i]" in messages
//   group(name, elems, what, d)      a non-empty list of structs (std::vector<E>, fbkd's Level): Python
//                                    passes a sequence of tuples, in the order `d(elem, f)` names the
//                                    element's fields; elements are named "name[i].field"
//   param(name, member)              a plain member of Args that is not in `options` (ssim's reduction,
//                                    softmax's axis), set by keyword like an option field
//   upstream(view)                   grad_out, read in backward only
//   out(name, view, shape[, opt])    a value output of `shape` (contiguous); opt: only when Python asks
//                                    for it by name in `want` (fbkd's two masks)
//   out_like(name, view, like)       a value output shaped and strided like input `like`
//   out_reduced(name, view, none, like)  the value of a loss: a 0-dim tensor, or, where `none` (the
//                                    reduction is none), shaped and strided like input `like`
//   grad(name, view, of)             the gradient of input `of`, only when Python asks for it
//   grad_list(name, views, of)       the gradients of list input `of`, one per element ("name[i]"),
//                                    all allocated when Python asks for any (entries that take one
//                                    gradient per level)
//   reserve(r, bytes[, opt])         a reserve buffer forward fills and backward reads; opt: only when
//                                    Python asks for it by name ("reserve" in `want`), so a forward
//                                    that no backward follows keeps nothing (the blocks)
// Options: the entry's `options` member is set from keywords (a dict: field -> value, converted as
// the kt::Options class of its type says: numbers, bools, lists, enums by name (EnumNames below),
// nested options structs as dicts) or from an instance of its kt::Options class. Errors name the
// entry and the field: "kdloss_torch.mse_loss: argument 'reduction' must be 'none', 'mean', 'sum' or
// 'batchmean' but is 'avg'".
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "common.hpp"
#include "kdloss/core/entry.hpp"
#include "kdloss/core/types.hpp"

namespace kdloss_torch {

// ---- enums by name ----------------------------------------------------------------------------

/// The Python names of an enum: specialise with `static constexpr std::pair<const char*, E> values[]`
/// (the first name of a value is the one Python reads back) and `static constexpr const char*
/// expected` (the list the error message gives; nullptr: the names, "'a', 'b' or 'c'").
template <class E>
struct EnumNames;

template <>
struct EnumNames<kdloss::Reduction> {
  static constexpr std::pair<const char*, kdloss::Reduction> values[] = {{"none", kdloss::Reduction::none},
                                                                         {"mean", kdloss::Reduction::mean},
                                                                         {"sum", kdloss::Reduction::sum},
                                                                         {"batchmean", kdloss::Reduction::batchmean}};
  static constexpr const char* expected = nullptr;
};

namespace detail {

/// "fn: " or "" (an options class used outside a call).
inline std::string prefix(const char* fn) { return fn && *fn ? std::string(fn) + ": " : std::string(); }

template <class E>
E enum_from(py::handle v, const char* fn, const std::string& name) {
  using N = EnumNames<E>;
  if (py::isinstance<py::str>(v)) {
    const std::string s = v.cast<std::string>();
    for (const auto& [n, e] : N::values)
      if (s == n) return e;
  }
  std::string expected;
  if (N::expected) {
    expected = N::expected;
  } else {
    const std::size_t k = std::size(N::values);
    for (std::size_t i = 0; i < k; ++i)
      expected += std::string(i == 0 ? "" : i + 1 == k ? " or " : ", ") + "'" + N::values[i].first + "'";
  }
  const std::string got = py::isinstance<py::str>(v) ? "'" + v.cast<std::string>() + "'" : std::string(py::repr(v));
  kdloss::detail::fail(prefix(fn), "argument '", name, "' must be ", expected, " but is ", got);
}
template <class E>
py::object enum_to(E e) {
  for (const auto& [n, x] : EnumNames<E>::values)
    if (x == e) return py::str(n);
  return py::none();
}

template <class O>
struct FieldInfo {
  std::string name;
  std::function<void(O&, py::handle, const char*, const std::string&)> set;  // (options, value, fn, full name)
  std::function<py::object(const O&)> get;
};
/// The fields of options struct O, as its kt::Options class registered them (one list per type).
template <class O>
std::vector<FieldInfo<O>>& fields_of() {
  static std::vector<FieldInfo<O>> fields;
  return fields;
}

template <class F>
struct is_vector : std::false_type {};
template <class F, class A>
struct is_vector<std::vector<F, A>> : std::true_type {};

template <class O>
O options_from(py::handle v, const char* fn, const std::string& name);
template <class O>
void options_into(O& o, const py::dict& d, const char* fn, const std::string& name);

/// A Python value as field type F (`name`: the field, for messages).
template <class F>
F value_from(py::handle v, const char* fn, const std::string& name) {
  if constexpr (std::is_enum_v<F>) {
    return enum_from<F>(v, fn, name);
  } else if constexpr (std::is_class_v<F> && !is_vector<F>::value && !std::is_same_v<F, std::string>) {
    return options_from<F>(v, fn, name);
  } else {
    try {
      return v.cast<F>();
    } catch (const py::cast_error&) {
      kdloss::detail::fail(prefix(fn), "argument '", name, "' has the wrong type ",
                           std::string(py::str(py::type::of(v).attr("__name__"))), " (", std::string(py::repr(v)),
                           ")");
    }
  }
}
template <class F>
py::object value_to(const F& x) {
  if constexpr (std::is_enum_v<F>)
    return enum_to(x);
  else
    return py::cast(x);
}

/// target = v; a dict sets only its fields of a nested options struct (the others keep target's values,
/// so MsSsimL1Options' own data_range default survives {"ms_ssim": {"window_size": 3}}).
template <class F>
void assign(F& target, py::handle v, const char* fn, const std::string& name) {
  if constexpr (std::is_class_v<F> && !is_vector<F>::value && !std::is_same_v<F, std::string>) {
    if (py::isinstance<py::dict>(v)) return options_into(target, py::reinterpret_borrow<py::dict>(v), fn, name);
  }
  target = value_from<F>(v, fn, name);
}

/// Options struct O from a dict of fields (the others keep the C++ defaults) or an instance of its
/// class; None gives the defaults. A nested options field is named "outer.inner" in messages.
template <class O>
O options_from(py::handle v, const char* fn, const std::string& name) {
  if (v.is_none()) return O{};
  if (py::isinstance<O>(v)) return v.cast<O>();
  if (!py::isinstance<py::dict>(v)) {
    kdloss::detail::fail(prefix(fn), "argument '", name.empty() ? std::string("options") : name, "' must be a ",
                         std::string(py::str(py::type::of<O>().attr("__name__"))), " or a dict but is ",
                         std::string(py::str(py::type::of(v).attr("__name__"))));
  }
  O o{};
  options_into(o, py::reinterpret_borrow<py::dict>(v), fn, name);
  return o;
}
template <class O>
void options_into(O& o, const py::dict& d, const char* fn, const std::string& name) {
  for (const auto& [k, x] : d) {
    const std::string key = py::str(k);
    bool found = false;
    for (const auto& f : fields_of<O>()) {
      if (f.name != key) continue;
      f.set(o, x, fn, name.empty() ? key : name + "." + key);
      found = true;
      break;
    }
    if (!found) throw py::attribute_error(prefix(fn) + "unknown option '" + key + "' of " +
                                          std::string(py::str(py::type::of<O>().attr("__name__"))));
  }
}

}  // namespace detail

// ---- the schema ----------------------------------------------------------------------------------

/// One bound entry point: its schema and its call. Python sees it as kdloss_torch._C.<name>, called as
/// entry(mode, tensors, options=None, grad_out=None, want=[], reserve=None) -> {output name: tensor}:
/// mode 0/1/2 is kdloss::Mode forward/backward/forward_backward; `tensors` holds one item per input
/// slot (a tensor or None; a sequence for a list; a sequence of tuples for a group); `options` is a
/// dict of option fields and params, an options instance, or None; `want` names the gradient (and
/// optional value) outputs to allocate, by their flat names ("grad_student", "grad_students[1]",
/// "levels[0].grad_student").
struct Entry {
  std::string fn;                    ///< name in messages: "kdloss_torch.distance_loss"
  std::vector<std::string> inputs;   ///< input slots, in the order Python passes them
  std::vector<bool> optional;        ///< per slot: None allowed
  std::vector<std::string> kinds;    ///< per slot: "tensor", "list" or "group"
  std::vector<std::string> kept;     ///< per slot: the value output backward gets here ("" for none)
  std::vector<std::string> what;     ///< per slot: what an element of a list or group is
  std::vector<std::vector<std::string>> fields;  ///< per group slot: its element's tensors
  std::vector<std::vector<bool>> field_optional; ///< ... and whether each may be None
  std::vector<std::string> outputs;  ///< value outputs ("out")
  std::vector<std::string> grads;    ///< gradient outputs ("grad_student"; a group's: its field's name) ...
  std::vector<std::string> grad_of;  ///< ... the input each is the gradient of ("student") ...
  std::vector<std::string> grad_slot;  ///< ... and the slot that input is in (itself, a list or a group)
  std::vector<std::string> params;   ///< plain Args members set by keyword (ssim's "reduction")
  bool upstream = false;             ///< backward reads grad_out
  bool reserve = false;              ///< forward fills a reserve buffer that backward reads
  bool has_options = false;          ///< takes an options object (bound with kdloss_torch::Options)
  std::string options_type;          ///< its Python class name
  using Run = std::function<py::dict(const Entry&, kdloss::Mode, const py::sequence&, py::handle, py::handle,
                                     py::handle, const std::vector<std::string>&)>;
  Run run;
};

/// Registers the Python class of Entry (torch_glue.cpp, before the families).
void register_entry_class(py::module_& m);

/// One call's flattened tensors: flat[begin[slot] + k] is element k of input slot `slot`.
struct Flat {
  std::vector<Arg> in;
  std::vector<py::handle> obj;
  std::vector<std::size_t> begin, count;
};

/// What `describe` talks to: records names (schema pass) or fills the views of one call (call pass).
template <class T>
class Fields {
 public:
  struct Context {
    kdloss::Mode mode;
    const Flat* flat;
    const Arg* up;
    py::handle reserve;
    py::handle options;  // a dict of keywords (params are read from it), or not
    const std::vector<std::string>* want;
    py::dict* result;
  };
  /// Schema pass (of the entry, or of a group's element when `element`).
  explicit Fields(Entry& schema) : schema_(&schema) {}
  /// Call pass. A group's element: `index` maps its field i to flat index, names get `prefix`.
  Fields(const Entry& entry, const Context& call, std::vector<std::size_t> index = {},
         const std::vector<std::string>* names = nullptr, std::string prefix = "")
      : entry_(&entry), call_(call), index_(std::move(index)), names_(names ? names : &entry.inputs),
        prefix_(std::move(prefix)) {}

  void in(const char* name, View<const T>& view, bool optional = false) {
    if (schema_) return slot(name, "tensor", optional);
    view = arg(next_++).template in<T>();
  }
  void kept(const char* name, View<const T>& view, const char* output) {
    if (schema_) {
      slot(name, "tensor", true);
      schema_->kept.back() = output;
      return;
    }
    const Arg& a = arg(next_++);
    if (call_.mode == kdloss::Mode::backward) view = a.template in<T>();
  }
  void in_list(const char* name, std::vector<View<const T>>& views, const char* what) {
    if (schema_) {
      slot(name, "list", false);
      schema_->what.back() = what;
      return;
    }
    const std::size_t s = next_++;
    views.resize(call_.flat->count[s]);
    for (std::size_t i = 0; i < views.size(); ++i) views[i] = call_.flat->in[call_.flat->begin[s] + i].template in<T>();
  }
  template <class E, class Describe>
  void group(const char* name, std::vector<E>& elems, const char* what, Describe&& describe) {
    if (schema_) {
      Entry element;
      element.fn = schema_->fn;
      E e{};
      Fields sub(element);
      describe(e, sub);
      slot(name, "group", false);
      schema_->what.back() = what;
      schema_->fields.back() = element.inputs;
      schema_->field_optional.back() = element.optional;
      for (std::size_t g = 0; g < element.grads.size(); ++g) {
        schema_->grads.push_back(element.grads[g]);
        schema_->grad_of.push_back(element.grad_of[g]);
        schema_->grad_slot.push_back(name);
      }
      return;
    }
    const std::size_t s = next_++;
    const std::vector<std::string>& fields = entry_->fields[s];
    const std::size_t n = fields.size();
    elems.resize(call_.flat->count[s] / (n ? n : 1));
    for (std::size_t i = 0; i < elems.size(); ++i) {
      std::vector<std::size_t> index(n);
      for (std::size_t k = 0; k < n; ++k) index[k] = call_.flat->begin[s] + i * n + k;
      Fields sub(*entry_, call_, std::move(index), &fields, std::string(name) + "[" + std::to_string(i) + "].");
      describe(elems[i], sub);
    }
  }
  template <class F>
  void param(const char* name, F& member) {
    if (schema_) {
      schema_->params.push_back(name);
      return;
    }
    if (!py::isinstance<py::dict>(call_.options)) return;
    const auto d = py::reinterpret_borrow<py::dict>(call_.options);
    if (d.contains(name)) member = detail::value_from<F>(d[name], entry_->fn.c_str(), name);
  }
  void upstream(View<const T>& view) {
    if (schema_) {
      schema_->upstream = true;
      return;
    }
    if (call_.mode == kdloss::Mode::backward) view = call_.up->template in<T>();
  }
  void out(const char* name, View<T>& view, const Dims& shape, bool optional = false) {
    if (schema_) {
      schema_->outputs.push_back(name);
      return;
    }
    if (!kdloss::writes_value(call_.mode) || (optional && !wanted(name))) return;
    keep(name, empty(first(), shape, name), view);
  }
  void out_like(const char* name, View<T>& view, const char* like) {
    if (schema_) {
      schema_->outputs.push_back(name);
      return;
    }
    if (kdloss::writes_value(call_.mode)) keep(name, empty_like(tensor(like), name), view);
  }
  void out_reduced(const char* name, View<T>& view, bool none, const char* like) {
    if (none)
      out_like(name, view, like);
    else
      out(name, view, Dims{});
  }
  void grad(const char* name, View<T>& view, const char* of) {
    if (schema_) {
      schema_->grads.push_back(name);
      schema_->grad_of.push_back(of);
      schema_->grad_slot.push_back(of);
      return;
    }
    if (!kdloss::writes_gradients(call_.mode)) return;
    const std::string flat = prefix_ + name;
    if (wanted(flat)) keep(flat, empty_like(tensor(of), flat.c_str()), view);
  }
  void grad_list(const char* name, std::vector<View<T>>& views, const char* of) {
    if (schema_) {
      schema_->grads.push_back(name);
      schema_->grad_of.push_back(of);
      schema_->grad_slot.push_back(of);
      return;
    }
    if (!kdloss::writes_gradients(call_.mode)) return;
    const std::size_t s = slot_of(of);
    const std::size_t n = call_.flat->count[s];
    bool any = false;
    for (std::size_t i = 0; i < n && !any; ++i) any = wanted(std::string(name) + "[" + std::to_string(i) + "]");
    if (!any) return;
    views.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      const std::string flat = std::string(name) + "[" + std::to_string(i) + "]";
      keep(flat, empty_like(call_.flat->obj[call_.flat->begin[s] + i], flat.c_str()), views[i]);
    }
  }
  template <class Bytes>
  void reserve(kdloss::Reserve& r, Bytes&& bytes, bool optional = false) {
    if (schema_) {
      schema_->reserve = true;
      return;
    }
    const char* fn = entry_->fn.c_str();
    if (call_.mode == kdloss::Mode::backward) {
      if (!call_.reserve.is_none()) r = reserve_of(call_.reserve, fn, "reserve");
      return;
    }
    if (optional && !wanted("reserve")) return;  // e.g. a block's forward under no_grad: nothing to keep
    py::object t = empty_reserve(first().device, bytes());
    r = reserve_of(t, fn, "reserve");
    (*call_.result)["reserve"] = t;
  }

 private:
  void slot(const char* name, const char* kind, bool optional) {
    schema_->inputs.push_back(name);
    schema_->optional.push_back(optional);
    schema_->kinds.push_back(kind);
    schema_->kept.emplace_back();
    schema_->what.emplace_back();
    schema_->fields.emplace_back();
    schema_->field_optional.emplace_back();
  }
  /// Flat index of this scope's input i.
  std::size_t flat_index(std::size_t i) const { return index_.empty() ? call_.flat->begin[i] : index_[i]; }
  const Arg& arg(std::size_t i) const { return call_.flat->in[flat_index(i)]; }
  const Arg& first() const {
    for (const Arg& a : call_.flat->in)
      if (a.present) return a;
    return call_.flat->in.front();
  }
  std::size_t slot_of(const char* input) const {
    for (std::size_t i = 0; i < names_->size(); ++i)
      if ((*names_)[i] == input) return i;
    kdloss::detail::fail(entry_->fn, ": internal: no input named '", input, "'");
  }
  py::handle tensor(const char* input) const {
    const std::size_t i = slot_of(input);
    kdloss::detail::require(arg(i).present, entry_->fn, ": argument '", prefix_, input,
                            "' is None but its gradient or output was requested");
    return call_.flat->obj[flat_index(i)];
  }
  bool wanted(const std::string& name) const {
    for (const auto& w : *call_.want)
      if (w == name) return true;
    return false;
  }
  void keep(const std::string& name, Output o, View<T>& view) {
    view = o.arg.template out<T>();
    (*call_.result)[py::str(name)] = o.tensor;
  }

  Entry* schema_ = nullptr;
  const Entry* entry_ = nullptr;
  Context call_{};
  std::vector<std::size_t> index_;
  const std::vector<std::string>* names_ = nullptr;
  std::string prefix_;
  std::size_t next_ = 0;
};

namespace detail {
/// Specialise to std::true_type for an entry point that takes float and double only (dispatch_float_double).
template <template <class> class Args>
struct float_double_only : std::false_type {};

template <class A, class = void>
struct has_options : std::false_type {};
template <class A>
struct has_options<A, std::void_t<decltype(std::declval<A&>().options)>> : std::true_type {};

/// The call's tensors, flattened by slot (lists and groups element by element), checked and named.
Flat flatten(const Entry& e, const py::sequence& tensors, kdloss::Mode mode);
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
  if constexpr (detail::has_options<Args<float>>::value)
    e.options_type = py::str(py::type::of<std::decay_t<decltype(Args<float>{}.options)>>().attr("__name__"));
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
    const Flat flat = detail::flatten(e, tensors, mode);
    const Arg* first = &flat.in.front();
    for (const Arg& a : flat.in)
      if (a.present) {
        first = &a;
        break;
      }
    const Arg up = tensor_arg(grad_out, fn, "grad_out", !(e.upstream && mode == kdloss::Mode::backward));
    for (const Arg& a : flat.in) same_dtype(fn, *first, a);
    same_dtype(fn, *first, up);
    kdloss_torch::Call call(fn, first->device);
    py::dict result;
    const auto typed = [&](auto tag) {
      using T = typename decltype(tag)::type;
      Args<T> args{};
      if constexpr (detail::has_options<Args<T>>::value) {
        using O = std::decay_t<decltype(args.options)>;
        if (py::isinstance<py::dict>(options) && e.params.empty()) {
          args.options = detail::options_from<O>(options, fn, "");
        } else if (py::isinstance<py::dict>(options)) {
          // keywords: the options' fields (params are set by describe)
          py::dict fields;
          for (const auto& [k, v] : py::reinterpret_borrow<py::dict>(options)) {
            bool param = false;
            for (const auto& p : e.params) param = param || p == std::string(py::str(k));
            if (!param) fields[k] = v;
          }
          args.options = detail::options_from<O>(fields, fn, "");
        } else if (!options.is_none()) {
          kdloss::detail::require(py::isinstance<O>(options), fn, ": argument 'options' must be a ",
                                  e.options_type, " but is ", std::string(py::str(py::type::of(options).attr("__name__"))));
          args.options = options.cast<O>();
        }
      }
      Fields<T> f(e, typename Fields<T>::Context{mode, &flat, &up, reserve, options, &want, &result});
      describe(args, f);
      const kdloss::Exec ex = call.exec(workspace_bytes([&] { return workspace(args); }));
      py::gil_scoped_release nogil;
      run(args, mode, ex);
    };
    if constexpr (detail::float_double_only<Args>::value)
      dispatch_float_double(fn, *first, typed);
    else
      dispatch(fn, *first, typed);
    return result;
  };
  m.attr(name) = py::cast(std::move(e));
}

/// The run and workspace functions of an entry point E of the standard shape, for bind().
#define KDLOSS_TORCH_ENTRY(entry)                                                              \
  [](const auto& a, ::kdloss::Mode mode, const ::kdloss::Exec& exec) { entry(a, mode, exec); }, \
      [](const auto& a) -> std::size_t { return entry##_workspace_bytes(a); }

/// An options struct as a Python class: Options<kdloss::SmoothL1LossOptions>(m, "SmoothL1LossOptions", "...")
/// .field("beta", &kdloss::SmoothL1LossOptions::beta, "..."). Instances are made with keywords
/// (`_C.SmoothL1LossOptions(beta=0.5)`, defaults from the C++ struct), read and written by attribute
/// (enums by name, nested options structs as copies), and print their fields; a binding whose Args has
/// an `options` member takes one, or a dict of its fields (None: the defaults). Fields mirror the C++
/// struct's, with its names.
template <class O>
class Options {
 public:
  Options(py::module_& m, const char* name, const char* doc)
      : cls_(m, name, doc) {
    const std::string type = name;
    cls_.def(py::init([](const py::kwargs& kwargs) { return detail::options_from<O>(kwargs, nullptr, ""); }),
             "Options with the C++ defaults, set by keyword");
    cls_.def("__repr__", [type](const O& o) {
      std::string s = type + "(";
      const auto& fields = detail::fields_of<O>();
      for (std::size_t i = 0; i < fields.size(); ++i)
        s += (i ? ", " : "") + fields[i].name + "=" + std::string(py::repr(fields[i].get(o)));
      return s + ")";
    });
    cls_.def_property_readonly_static("fields", [](py::handle) {
      std::vector<std::string> names;
      for (const auto& f : detail::fields_of<O>()) names.push_back(f.name);
      return names;
    });
  }
  template <class F>
  Options& field(const char* name, F O::*member, const char* doc = "") {
    detail::fields_of<O>().push_back(
        {name, [member](O& o, py::handle v, const char* fn, const std::string& full) {
           detail::assign(o.*member, v, fn, full);
         },
         [member](const O& o) { return detail::value_to(o.*member); }});
    const std::string n = name;
    cls_.def_property(
        name, [member](const O& o) { return detail::value_to(o.*member); },
        [member, n](O& o, py::handle v) { detail::assign(o.*member, v, nullptr, n); }, doc);
    return *this;
  }

 private:
  py::class_<O> cls_;
};

}  // namespace kdloss_torch

"""Build of kdloss_torch, the PyTorch bridge of kdloss, with torch.utils.cpp_extension.

    cd python && python3 setup.py build_ext --inplace      # builds kdloss_torch/_C*.so in place
    python3 -m pytest python/tests                          # from the repository root

or, to install it into the environment (pyproject.toml declares the build requirements):

    python3 -m pip install setuptools wheel               # the build requirements (a fresh venv lacks wheel)
    python3 -m pip install --no-build-isolation ./python  # builds against the torch already installed

Environment:
    KDLOSS_TORCH_CUDA   auto (default): a CUDA build when torch has CUDA, nvcc is found and a GPU is
                        visible; 1: a CUDA build (fails without nvcc / CUDA torch); 0: CPU only.
    KDLOSS_TORCH_NATIVE 1: compile the host code with -march=native (default 0: portable).
    KDLOSS_TORCH_COMPILE_CHECK  1: a build that only checks that the sources compile (scripts/test.sh on a
                        machine without a GPU): host code at -O0, CUDA code to PTX only (compute_90) at
                        -O0, in 0.4x the time. Its module is loaded, never used for numbers. Default 0.
    TORCH_CUDA_ARCH_LIST  GPU architectures of a CUDA build (default: those of the visible GPUs, or
                        9.0 when none is visible).
    KDLOSS_TORCH_BUILD_DIR  where objects go (default python/build).
    MAX_JOBS            parallel compile jobs (torch's ninja backend).
"""

import glob
import os
import shutil
import sys

import setuptools
from setuptools import setup


def _check_build_requirements():
    """Stops with a clear message where a requirement of the build is missing (pyproject.toml lists
    them; pip does not install them under --no-build-isolation, and torch must be the one installed)."""
    try:
        import torch  # noqa: F401
    except ImportError as e:
        sys.exit("kdloss_torch: torch is not importable by %s (%s): kdloss_torch compiles against the installed "
                 "torch, so install torch first and build with `pip install --no-build-isolation ./python` (an "
                 "isolated build cannot see it)" % (sys.executable, e))
    # pip builds a wheel (dist_info, bdist_wheel, editable_wheel): setuptools 70.1 and later have
    # bdist_wheel built in; older ones (65 in a fresh venv of Python 3.11) need the `wheel` package and
    # otherwise stop with "invalid command 'bdist_wheel'".
    if not {"dist_info", "bdist_wheel", "editable_wheel"} & set(sys.argv[1:]):
        return
    for module in ("setuptools.command.bdist_wheel", "wheel.bdist_wheel"):
        try:
            __import__(module)
            return
        except ImportError:
            pass
    sys.exit("kdloss_torch: building the package needs the `wheel` package with setuptools %s (< 70.1, which has "
             "no bdist_wheel of its own): run `%s -m pip install wheel` (or upgrade setuptools), then `pip install "
             "--no-build-isolation ./python` again" % (setuptools.__version__, sys.executable))


_check_build_requirements()

import torch  # noqa: E402
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CSRC = os.path.join(HERE, "csrc")
BUILD = os.environ.get("KDLOSS_TORCH_BUILD_DIR", os.path.join(HERE, "build"))


def _flag(name, default):
    value = os.environ.get(name, default).strip().lower()
    if value in ("1", "on", "yes", "true"):
        return True
    if value in ("0", "off", "no", "false"):
        return False
    if value == "auto":
        return None
    sys.exit(f"kdloss_torch: {name}={value!r}: expected 0, 1 or auto")


def _want_cuda():
    """CUDA build or not (see the module docstring)."""
    have_nvcc = CUDA_HOME is not None and os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc"))
    torch_cuda = torch.version.cuda is not None
    choice = _flag("KDLOSS_TORCH_CUDA", "auto")
    if choice is False:
        return False
    if choice is True:
        if not (have_nvcc and torch_cuda):
            sys.exit("kdloss_torch: KDLOSS_TORCH_CUDA=1 needs nvcc (CUDA_HOME=%s) and a CUDA build of torch (torch %s)"
                     % (CUDA_HOME, torch.__version__))
        return True
    return have_nvcc and torch_cuda and torch.cuda.is_available()


def _eigen_include():
    for candidate in (os.environ.get("EIGEN3_INCLUDE_DIR", ""), "/usr/include/eigen3", "/usr/local/include/eigen3"):
        if candidate and os.path.exists(os.path.join(candidate, "Eigen", "Core")):
            return candidate
    sys.exit("kdloss_torch: Eigen 3 headers not found (Debian: libeigen3-dev; or set EIGEN3_INCLUDE_DIR)")


def _sources(cuda):
    """csrc/*.cpp: the torch glue and the binding families. In a CUDA build each is compiled by nvcc
    through a generated .cu that includes it: kdloss's GPU backend exists only under nvcc, and every
    file of one extension must see the same kdloss ABI namespace (kdloss/config.hpp), or the glue's
    `catch (const kdloss::Error&)` and its option types would not be the families' ones."""
    glue = os.path.join(CSRC, "torch_glue.cpp")
    sources = [glue] + sorted(f for f in glob.glob(os.path.join(CSRC, "*.cpp")) if f != glue)
    if not cuda:
        return sources
    gen = os.path.join(BUILD, "cuda_sources")
    os.makedirs(gen, exist_ok=True)
    out = []
    for f in sources:
        cu = os.path.join(gen, os.path.splitext(os.path.basename(f))[0] + "_cuda.cu")
        text = '// generated by python/setup.py: compile %s with nvcc\n#include "%s"\n' % (os.path.basename(f), f)
        if not os.path.exists(cu) or open(cu).read() != text:
            with open(cu, "w") as fh:
                fh.write(text)
        out.append(cu)
    return out


def _extension():
    cuda = _want_cuda()
    native = _flag("KDLOSS_TORCH_NATIVE", "0")
    check_only = _flag("KDLOSS_TORCH_COMPILE_CHECK", "0")
    opt = "-O0" if check_only else "-O3"
    cxx = [opt, "-g0", "-fopenmp", "-fvisibility=hidden", "-DNDEBUG", "-Wno-unused-parameter"]
    if native:
        cxx.append("-march=native")
    include_dirs = [os.path.join(ROOT, "include"), CSRC, _eigen_include()]
    sources = _sources(cuda)
    common = dict(name="kdloss_torch._C", sources=sources, include_dirs=include_dirs,
                  extra_link_args=["-fopenmp"])
    if not cuda:
        print("kdloss_torch: CPU build (CppExtension)")
        return CppExtension(extra_compile_args={"cxx": cxx}, **common)
    if "TORCH_CUDA_ARCH_LIST" not in os.environ and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"  # Hopper, as kdloss's CMake default
    print("kdloss_torch: CUDA build (CUDAExtension), arch list %s" % os.environ.get("TORCH_CUDA_ARCH_LIST", "auto"))
    # torch's nvcc flags define __CUDA_NO_HALF_CONVERSIONS__ and friends; kdloss's GPU code converts
    # between __half / __nv_bfloat16 and float with the CUDA headers' conversions: undefine them.
    no_half = ["__CUDA_NO_HALF_OPERATORS__", "__CUDA_NO_HALF_CONVERSIONS__", "__CUDA_NO_BFLOAT16_CONVERSIONS__",
               "__CUDA_NO_HALF2_OPERATORS__"]
    nvcc = ["-U" + m for m in no_half] + [opt, "-DNDEBUG", "--expt-relaxed-constexpr", "--extended-lambda",
            "-Xcompiler=-fopenmp", "-Xcompiler=-g0", "-Xcompiler=-fvisibility=hidden",
            "-Xcudafe=--diag_suppress=20012,--diag_suppress=20011,--diag_suppress=20014,--diag_suppress=20015"]
    if native:
        # torch adds its -gencode flags only when no flag of ours contains "arch", and -march=native
        # does: add them here, from TORCH_CUDA_ARCH_LIST, before it.
        if not check_only:
            from torch.utils.cpp_extension import _get_cuda_arch_flags
            nvcc += _get_cuda_arch_flags()
        nvcc.append("-Xcompiler=-march=native")
    if check_only:
        # PTX only: no ptxas pass (torch adds no arch flags of its own when -gencode is given).
        nvcc += ["-Xcicc", "-O0", "-gencode=arch=compute_90,code=compute_90"]
        print("kdloss_torch: compile check (KDLOSS_TORCH_COMPILE_CHECK=1): -O0, PTX for compute_90 only")
    return CUDAExtension(extra_compile_args={"cxx": cxx + ["-DKDLOSS_TORCH_WITH_CUDA"],
                                             "nvcc": nvcc + ["-DKDLOSS_TORCH_WITH_CUDA"]}, **common)


class _Build(BuildExtension):
    def initialize_options(self):
        super().initialize_options()
        self.build_temp = os.path.join(BUILD, "temp")

    def finalize_options(self):
        super().finalize_options()
        # Inside a virtual environment setuptools adds <venv>/include to every compile command. No header
        # of kdloss_torch comes from there, and without it the commands of an in-place build stay valid:
        # `pip install --no-build-isolation ./python` from a venv then reuses its objects instead of
        # recompiling every file (six minutes on two cores).
        venv_include = os.path.abspath(os.path.join(sys.exec_prefix, "include"))
        holds_headers = any(files for _, _, files in os.walk(venv_include))  # a new venv: empty folders
        if sys.exec_prefix != sys.base_exec_prefix and not holds_headers:
            self.include_dirs = [d for d in self.include_dirs if os.path.abspath(d) != venv_include]


setup(
    name="kdloss_torch",
    version="0.1.0",
    description="PyTorch bridge of kdloss: knowledge-distillation losses with analytic backward",
    packages=["kdloss_torch", "kdloss_torch.detr"],
    ext_modules=[_extension()],
    cmdclass={"build_ext": _Build.with_options(use_ninja=shutil.which("ninja") is not None)},
    python_requires=">=3.9",
    zip_safe=False,
)

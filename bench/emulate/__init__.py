"""Emulated ARM64: run `edgebench run` on the ARM kernels of the engines, on an x86 host, under qemu user mode.

host.py checks and prepares the host (root, packages, binfmt_misc); rootfs.py builds the arm64 Debian root
filesystem once into the cache; venv.py installs this project's wheel and the engines' aarch64 wheels in it;
chroot.py mounts and runs inside it; forward.py rewrites the forwarded `run` arguments; marking.py marks the
report's rows as emulated; runner.py ties them together (`edgebench emulate`). Accuracy and parity under
emulation are those of the ARM kernels; timings are not meaningful.
"""

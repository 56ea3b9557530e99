# Operations, the part before any target is defined (cmake/cpack.cmake is
# the part after all of them):
# - libmicrohttpd, for mlxd --metrics (PkgConfig::MICROHTTPD);
# - an install RUNPATH, so that installed programs and libraries find
#   libmlxd whatever the prefix.

pkg_check_modules(MICROHTTPD REQUIRED IMPORTED_TARGET libmicrohttpd)

# Relative to $ORIGIN, so that a tree installed to one prefix and moved (or
# packaged for another) still works: programs in bindir find libdir, and
# libraries in libdir (libmlxd_mpi.so) find libmlxd beside them. A target
# installed elsewhere (the Python module) sets its own INSTALL_RPATH.
file(RELATIVE_PATH mlxd_bin_to_lib "/p/${CMAKE_INSTALL_BINDIR}" "/p/${CMAKE_INSTALL_LIBDIR}")
set(CMAKE_INSTALL_RPATH "\$ORIGIN/${mlxd_bin_to_lib}" "\$ORIGIN")
# RUNPATH (not the old RPATH): LD_LIBRARY_PATH still comes first.
add_link_options("LINKER:--enable-new-dtags")


# Operations, the part after every target is defined (cmake/package.cmake
# is the part before): the examples' install rules, and the Debian package.
# `cmake --build build --target package` (CPack DEB) makes
# mlxd_VERSION_ARCH.deb from the install rules, so whatever is installed
# (the Python module, libmlxd_mpi.so, ...) is in it.

# The examples: sources to read and build against the installed files, and
# the C programs built, runnable from any prefix (their RUNPATH reaches
# libdir from where they are installed).
set(MLXD_EXAMPLES_DIR ${CMAKE_INSTALL_LIBEXECDIR}/mlxd/examples)
file(RELATIVE_PATH mlxd_examples_to_lib "/p/${MLXD_EXAMPLES_DIR}" "/p/${CMAKE_INSTALL_LIBDIR}")
set_target_properties(hello sum PROPERTIES INSTALL_RPATH "\$ORIGIN/${mlxd_examples_to_lib}")
install(TARGETS hello sum RUNTIME DESTINATION ${MLXD_EXAMPLES_DIR})
install(FILES examples/hello.c examples/sum.c DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
foreach(py hello.py sum.py)
  if(EXISTS ${PROJECT_SOURCE_DIR}/examples/${py})
    install(PROGRAMS examples/${py} DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
  endif()
endforeach()

# ---- the Debian package ----
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME mlxd)
set(CPACK_PACKAGE_VENDOR "mlxd")
set(CPACK_PACKAGE_CONTACT "mlxd maintainers <mlxd@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "daemon serving MLX's distributed collectives to local processes")
set(CPACK_PACKAGE_DESCRIPTION
  "mlxd serves the collective operations of mlx.core.distributed (all_sum, all_gather,\n"
  "send, recv, ...) to client processes over ZeroMQ and shared memory, with Open MPI\n"
  "between the daemons of several hosts. The package holds the daemon, mlxctl,\n"
  "libmlxd with its headers, pkg-config and CMake files, the Python module, the\n"
  "systemd units and the examples. It starts and enables nothing.")
string(REPLACE ";" "" CPACK_PACKAGE_DESCRIPTION "${CPACK_PACKAGE_DESCRIPTION}")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
# The package installs where the build was configured to (configure with
# -DCMAKE_INSTALL_PREFIX=/usr for a package that follows Debian's layout):
# the paths chosen at configure time (libdir, the Python module's folder)
# are then the package's own.
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)       # mlxd_0.1.0_amd64.deb
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/ml-explore/mlx")
# The shared libraries come from dpkg-shlibdeps (libzmq5, libprotobuf-c1,
# libopenmpi3, libsystemd0, libmicrohttpd12, libc6); what it cannot see is
# listed: numpy for the Python module, mpirun for mlxd-world.service, and
# the systemd tools the maintainer scripts run.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "python3, python3-numpy, openmpi-bin, systemd | systemd-standalone-sysusers, systemd | systemd-standalone-tmpfiles")
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)

# Maintainer scripts: create the mlxd user and /run/mlxd on install
# (systemd-sysusers, systemd-tmpfiles, by file name as debhelper does: both
# search /usr/lib and /usr/local/lib); start and enable nothing.
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${PROJECT_SOURCE_DIR}/cmake/package/postinst ${PROJECT_SOURCE_DIR}/cmake/package/triggers)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

include(CPack)

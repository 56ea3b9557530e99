# mlxd_install_configured(TEMPLATE DESTINATION [RENAME NAME])
#
# Installs TEMPLATE (a path relative to the source directory) into
# DESTINATION with its @VARIABLES@ replaced at install time, so that the
# paths in it name the prefix actually installed to: `cmake --install build
# --prefix /opt/mlxd` gives units whose ExecStart= is /opt/mlxd/bin/mlxd and
# an mlxd.pc whose prefix is /opt/mlxd. DESTDIR is honoured as usual (it
# changes where files go, not what they say).
#
# Known at install time: CMAKE_INSTALL_PREFIX, CMAKE_INSTALL_<DIR> and
# CMAKE_INSTALL_FULL_<DIR> for BINDIR, LIBDIR, INCLUDEDIR, LOCALSTATEDIR,
# PROJECT_VERSION, and any variable named in MLXD_INSTALL_CONFIGURED_VARS
# (given its value at configure time).
#
# The file is also configured at once into ${PROJECT_BINARY_DIR}/configured/
# with the configured prefix, for the tests to check.

set(MLXD_INSTALL_CONFIGURED_DIRS BINDIR LIBDIR INCLUDEDIR LOCALSTATEDIR)

function(mlxd_install_configured template destination)
  cmake_parse_arguments(ARG "" "RENAME" "" ${ARGN})
  get_filename_component(name "${template}" NAME)
  string(REGEX REPLACE "\\.in$" "" name "${name}")
  set(src "${PROJECT_SOURCE_DIR}/${template}")
  # Staged under the template's own path: two templates may install under
  # one name (the system and the user mlxd.service).
  string(REGEX REPLACE "\\.in$" "" stem "${template}")
  set(now "${PROJECT_BINARY_DIR}/configured/${stem}")
  set(staged "${PROJECT_BINARY_DIR}/install-time/${stem}")
  configure_file("${src}" "${now}" @ONLY)

  set(code "set(PROJECT_VERSION \"${PROJECT_VERSION}\")\n")
  foreach(v IN LISTS MLXD_INSTALL_CONFIGURED_VARS)
    string(APPEND code "set(${v} \"${${v}}\")\n")
  endforeach()
  foreach(d IN LISTS MLXD_INSTALL_CONFIGURED_DIRS)
    # The configured full paths stand when the prefix did not change (they
    # hold GNUInstallDirs' special cases, such as /var for prefix /usr);
    # otherwise relative dirs go under the install-time prefix.
    string(APPEND code
      "set(CMAKE_INSTALL_${d} \"${CMAKE_INSTALL_${d}}\")\n"
      "if(CMAKE_INSTALL_PREFIX STREQUAL \"${CMAKE_INSTALL_PREFIX}\" OR IS_ABSOLUTE \"\${CMAKE_INSTALL_${d}}\")\n"
      "  set(CMAKE_INSTALL_FULL_${d} \"${CMAKE_INSTALL_FULL_${d}}\")\n"
      "else()\n"
      "  set(CMAKE_INSTALL_FULL_${d} \"\${CMAKE_INSTALL_PREFIX}/\${CMAKE_INSTALL_${d}}\")\n"
      "endif()\n")
  endforeach()
  string(APPEND code "configure_file(\"${src}\" \"${staged}\" @ONLY)\n")
  install(CODE "${code}")

  if(ARG_RENAME)
    set(name "${ARG_RENAME}")
  endif()
  install(FILES "${staged}" DESTINATION "${destination}" RENAME "${name}")
endfunction()

# Running mlxd as a service: the sd_notify protocol, socket activation, the
# units and the installed tree. Included from CMakeLists.txt (after IT_ENV);
# each test is the function of service.sh named like it. A test whose tool is
# missing (systemd-socket-activate, systemd-analyze, xmllint, pkg-config, groff)
# exits 77 and shows as skipped.

set(SERVICE_IT_ENV ${IT_ENV}
  SUM_BIN=$<TARGET_FILE:sum>
  BUILD_DIR=${PROJECT_BINARY_DIR})

# mlxd_service_test(NAME TIMEOUT [RESOURCE_LOCK]): runs the function NAME of
# service.sh.
function(mlxd_service_test name timeout)
  add_test(NAME ${name} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/service.sh ${name})
  set_tests_properties(${name} PROPERTIES
    TIMEOUT ${timeout}
    LABELS integration
    SKIP_RETURN_CODE 77
    ENVIRONMENT "${SERVICE_IT_ENV}")
  if(ARGC GREATER 2)
    set_tests_properties(${name} PROPERTIES RESOURCE_LOCK "${ARGV2}")
  endif()
endfunction()

mlxd_service_test(notify_ready_status_watchdog_stopping_in_order 60)
mlxd_service_test(socket_activation_runs_a_job 90)
mlxd_service_test(sigterm_during_a_job_gives_eunavailable 60)
mlxd_service_test(man_pages_say_what_help_says 30)
# Both install the build tree (cmake --install writes install-time files in it).
mlxd_service_test(systemd_analyze_verify_units 60 mlxd_install)
mlxd_service_test(installed_tree_builds_with_pkg_config_and_find_package 120 mlxd_install)
mlxd_service_test(installed_programs_find_libmlxd_from_any_prefix 120 mlxd_install)
# Installs a package on this machine: one at a time, and never beside an
# install of the build tree (the package target installs it too).
mlxd_service_test(debian_package_installs_runs_the_examples_and_removes_cleanly 900 "mlxd_install;mlxd_system_package")

# A sanitized libmlxd only loads into programs built with the same
# sanitizers, which an ordinary consumer is not: the install is tested by the
# normal pass.
# The package test installs system-wide programs built with sanitizers,
# whose runtime the examples and other programs would need preloaded: the
# package is what the plain build makes, and the plain pass tests it.
if(MLXD_SANITIZE)
  set_tests_properties(installed_tree_builds_with_pkg_config_and_find_package
                       debian_package_installs_runs_the_examples_and_removes_cleanly PROPERTIES DISABLED TRUE)
endif()

# Hardening: isolation between users, the daemon's caps, clients and daemons
# killed at chosen points, a flooding client, and a soak of random ops and
# kills on two daemons. Included from CMakeLists.txt; each test is the
# function of hardening.sh named like it. Paths are relative to this file, so
# that it can be included from any directory.
#
# Covered elsewhere, not repeated here:
#   client_can_name_only_its_own_memory (another process of the same user):
#     shm_foreign_segment_refused (shmraw foreign); the test of that name here
#     adds a process of another user in the socket's group
#   oversized_request_frame_refused: malformed_frames_get_errors (rawproto,
#     "frame 1 over 64 KiB")

# Public API only: caps, kill points, a daemon killed, latency under a flood.
add_executable(it_hardclient ${CMAKE_CURRENT_LIST_DIR}/hardclient.c)
target_link_libraries(it_hardclient PRIVATE mlxd_client it_testclient)

# The wire and the side channel spoken directly: flood, die before Hello,
# another user, another process's memory.
add_executable(it_hardraw ${CMAKE_CURRENT_LIST_DIR}/hardraw.c $<TARGET_OBJECTS:mlxd_wire>)
target_include_directories(it_hardraw PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/proto
                           ${PROJECT_BINARY_DIR}/proto)
target_link_libraries(it_hardraw PRIVATE PkgConfig::ZMQ PkgConfig::PROTOBUFC)

# Random ops checked against local references (public API only).
add_executable(it_soak ${CMAKE_CURRENT_LIST_DIR}/soak.c)
target_link_libraries(it_soak PRIVATE mlxd_client)

set(MLXD_SOAK_SECONDS 60 CACHE STRING "How long soak_two_daemons_random_ops_and_kills runs, in seconds")

# Whether this build is sanitized: then RSS bounds say nothing (quarantine).
if(MLXD_SANITIZE)
  set(MLXD_HARD_SANITIZED 1)
else()
  set(MLXD_HARD_SANITIZED 0)
endif()
set(HARD_ENV
  MLXD_BIN=$<TARGET_FILE:mlxd>
  MLXCTL_BIN=$<TARGET_FILE:mlxctl>
  OPCHECK_BIN=$<TARGET_FILE:it_opcheck>
  ERRCASE_BIN=$<TARGET_FILE:it_errcase>
  SHMRAW_BIN=$<TARGET_FILE:it_shmraw>
  SUM_BIN=$<TARGET_FILE:sum>
  HARDCLIENT_BIN=$<TARGET_FILE:it_hardclient>
  HARDRAW_BIN=$<TARGET_FILE:it_hardraw>
  SOAK_BIN=$<TARGET_FILE:it_soak>
  SOAK_SECONDS=${MLXD_SOAK_SECONDS}
  MPIRUN=${MPIEXEC_EXECUTABLE}
  MLXD_SANITIZED=${MLXD_HARD_SANITIZED})

# mlxd_hardening_test(NAME TIMEOUT [RESOURCE_LOCK]): runs the function NAME of
# hardening.sh.
function(mlxd_hardening_test name timeout)
  add_test(NAME ${name} COMMAND bash ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/hardening.sh ${name})
  set_tests_properties(${name} PROPERTIES
    TIMEOUT ${timeout}
    LABELS integration
    SKIP_RETURN_CODE 77
    ENVIRONMENT "${HARD_ENV}")
  if(ARGC GREATER 2)
    set_tests_properties(${name} PROPERTIES RESOURCE_LOCK ${ARGV2})
  endif()
endfunction()

# Isolation: who may connect, join, and name which memory.
mlxd_hardening_test(socket_dir_and_file_are_not_world_accessible 30)
mlxd_hardening_test(other_uid_is_denied 60)
mlxd_hardening_test(other_uid_cannot_join_an_existing_job 60)
mlxd_hardening_test(client_can_name_only_its_own_memory 60)

# One test per cap: one client over it, another one working meanwhile.
mlxd_hardening_test(max_clients_exceeded_gives_enomem 60)
mlxd_hardening_test(max_jobs_exceeded_gives_enomem 60)
mlxd_hardening_test(max_tensor_bytes_exceeded_gives_error 60)
mlxd_hardening_test(max_queued_bytes_makes_send_wait_not_fail 60)
mlxd_hardening_test(max_shm_bytes_exceeded_fails_alloc 60)
mlxd_hardening_test(max_groups_per_client_exceeded 60)
mlxd_hardening_test(flooding_client_does_not_stall_others 90)

# Faults: clients and daemons killed.
mlxd_hardening_test(client_killed_at_any_point_never_wedges_the_daemon 120)
mlxd_hardening_test(killed_daemon_gives_eunavailable_then_restart_serves 60)
# The soak's own deadline is SOAK_SECONDS; the timeout leaves room for the
# world's start, the drain and the checks.
math(EXPR _hard_soak_timeout "${MLXD_SOAK_SECONDS} + 120")
mlxd_hardening_test(soak_two_daemons_random_ops_and_kills ${_hard_soak_timeout} mpi)
set_tests_properties(soak_two_daemons_random_ops_and_kills PROPERTIES LABELS "integration;multihost")

# Shared memory: libmlxd's segments and staging against a real daemon, and the
# daemon's checks of what clients name. Included from CMakeLists.txt (after
# IT_ENV); each test is the function of shm.sh named like it.

# Through the public API: mixes of memory, alloc/free cycles, the cap, staging.
add_executable(it_shmcheck shmcheck.c)
target_link_libraries(it_shmcheck PRIVATE mlxd_client Threads::Threads)

# The side channel and the wire spoken directly, to name what libmlxd never would.
add_executable(it_shmraw shmraw.c $<TARGET_OBJECTS:mlxd_wire>)
target_include_directories(it_shmraw PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/proto
                           ${PROJECT_BINARY_DIR}/proto)
target_link_libraries(it_shmraw PRIVATE PkgConfig::ZMQ PkgConfig::PROTOBUFC)

# The client's shared-memory module (client/shm.c) against a fake daemon: a
# unit test, registered here to keep this change in one place; it can move to
# tests/unit/CMakeLists.txt as is.
add_executable(test_shm ${PROJECT_SOURCE_DIR}/tests/unit/test_shm.c)
target_include_directories(test_shm PRIVATE ${PROJECT_SOURCE_DIR}/client ${PROJECT_SOURCE_DIR}/include
                           ${PROJECT_SOURCE_DIR}/proto ${PROJECT_BINARY_DIR}/proto)
target_link_libraries(test_shm PRIVATE mlxd_client_static PkgConfig::CMOCKA PkgConfig::ZMQ PkgConfig::PROTOBUFC
                      Threads::Threads)
add_test(NAME test_shm COMMAND test_shm)
set_tests_properties(test_shm PROPERTIES TIMEOUT 60 LABELS unit)

set(SHM_IT_ENV ${IT_ENV}
  SHMCHECK_BIN=$<TARGET_FILE:it_shmcheck>
  SHMRAW_BIN=$<TARGET_FILE:it_shmraw>)

# mlxd_shm_test(NAME TIMEOUT): runs the function NAME of shm.sh.
function(mlxd_shm_test name timeout)
  add_test(NAME ${name} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/shm.sh ${name})
  set_tests_properties(${name} PROPERTIES
    TIMEOUT ${timeout}
    LABELS integration
    ENVIRONMENT "${SHM_IT_ENV}")
endfunction()

# Results in mlxd_alloc memory, staged and inline agree with each other and
# with the values opcheck computes, for every op, dtype and shape.
mlxd_shm_test(shm_results_equal_inline_for_every_op_and_dtype_two_ranks 120)
mlxd_shm_test(shm_results_equal_inline_for_every_op_and_dtype_three_ranks 150)
mlxd_shm_test(shm_inputs_and_outputs_mix_with_inline 120)
mlxd_shm_test(staged_large_heap_tensor_matches_inline 90)

# What a client names or hands over that is not its own, or not memory.
mlxd_shm_test(shm_bad_registrations_refused 60)
mlxd_shm_test(shm_out_of_bounds_reference_refused 60)
mlxd_shm_test(shm_foreign_segment_refused 60)

# Lifetimes and limits.
mlxd_shm_test(shm_client_killed_mid_op_leaves_no_segment 60)
mlxd_shm_test(shm_alloc_free_cycles_return_memory 120)
mlxd_shm_test(shm_over_cap_alloc_fails_and_staging_falls_back 60)
mlxd_shm_test(shm_without_side_channel_falls_back_to_ordinary_memory 60)
mlxd_shm_test(shm_memory_outlives_a_daemon_restart 60)
mlxd_shm_test(shm_groups_in_threads_share_segments_safely 90)

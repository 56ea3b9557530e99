# The request/reply ring (proto/PROTOCOL.md, "The ring"): on by default,
# off with MLXD_RING=0, ring and ZeroMQ requests interleaved on one
# connection, a full ring, a client that corrupts its ring, a client killed
# with an op in its ring. mlxd_script_tests() is lifetime.cmake's.

add_executable(it_ringcheck ringcheck.c)
target_include_directories(it_ringcheck PRIVATE ${PROJECT_SOURCE_DIR}/proto)
target_link_libraries(it_ringcheck PRIVATE mlxd_client it_testclient)

mlxd_script_tests(ring.sh 180 OFF "RINGCHECK_BIN=$<TARGET_FILE:it_ringcheck>;OPCHECK_BIN=$<TARGET_FILE:it_opcheck>"
  connections_talk_over_a_ring_by_default
  mlxd_ring_0_turns_the_ring_off
  ring_and_zeromq_requests_interleave_on_one_connection
  more_requests_in_flight_than_the_ring_holds_wait_for_room
  client_that_corrupts_its_ring_is_closed_and_others_go_on
  client_killed_with_an_op_in_its_ring_leaves_the_daemon_serving)

import mlxd as mx

world = mx.distributed.init()
rank, size = world.rank(), world.size()
print(f"Process {rank + 1}/{size} initialized.")

data = mx.array([1, 2, 3, 4])
local = data[rank * data.size // size : (rank + 1) * data.size // size]
local_sum = local.sum()
print(f"Process {rank} computed data sum to be {local_sum.item()}")

total = mx.distributed.all_sum(local_sum)
print(f"Data sum total = {total.item()}")

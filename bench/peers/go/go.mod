module longpollbench/peers

go 1.19

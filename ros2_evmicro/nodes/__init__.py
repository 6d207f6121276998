"""ROS 2 nodes (import rclpy). Each module has a node class and a ``main`` console script."""

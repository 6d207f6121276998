"""The ROS 2 side: message conversions, the node base class, QoS and the in-process runner (imports rclpy)."""

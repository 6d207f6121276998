"""ament_python package ros2_evmicro: `colcon build` on a ROS 2 install, `pip install -e .` elsewhere."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "ros2_evmicro"

# one console script per node: <kind>_node = ros2_evmicro.nodes.<kind>:main
NODE_KINDS = [
    "au",
    "bag_player",
    "dashboard",
    "davis",
    "driver_monitor",
    "event_monitor",
    "evk4",
    "face_detector",
    "protocol_player",
    "recon",
    "recorder",
    "sim_rig",
    "slicer",
    "webcam",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "bench", "bench.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/models", glob("models/*.pt") + glob("models/*.yaml") + glob("models/*.md")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="ros2_evmicro developers",
    maintainer_email="evmicro@example.org",
    description="Event-based facial micro-expression analysis (SNN, cVAE) for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [f"{k}_node = {PACKAGE}.nodes.{k}:main" for k in NODE_KINDS]
        + [f"evmicro = {PACKAGE}.cli:main"],
    },
)

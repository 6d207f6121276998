"""Build ROS 2 launch descriptions from the graph descriptions of :mod:`ros2_evmicro.graphs`.

The files in ``launch/`` are three lines each: they call :func:`generate` with their graph's name. Launch
arguments are the graph's arguments; the node list is computed at launch time from their values, so the
launch files and ``evmicro run`` start exactly the same nodes.
"""

from __future__ import annotations

from ros2_evmicro.graphs import PACKAGE, config_dir, get_graph


def generate(graph_name: str):
    """A ``LaunchDescription`` for the named graph (imports launch and launch_ros, present with ROS 2)."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from launch import LaunchDescription
    from ros2_evmicro.ros.node import fastdds_profile, fastdds_profile_env

    graph = get_graph(graph_name)

    def setup(context, *_args, **_kwargs):
        values = {a.name: LaunchConfiguration(a.name).perform(context) for a in graph.args}
        cfg = config_dir()
        prof = fastdds_profile()
        env = fastdds_profile_env(prof) if prof else {}
        actions = []
        for d in graph.nodes(values):
            params: list = [str(cfg / f) for f in d.param_files if (cfg / f).is_file()]
            params.append(dict(d.parameters))
            kwargs = dict(package=PACKAGE, executable=d.executable, name=d.name, parameters=params,
                          remappings=list(d.remappings), output="screen", additional_env=env)
            if d.namespace:
                kwargs["namespace"] = d.namespace
            if d.required:
                kwargs["on_exit"] = Shutdown(reason=f"{d.fqn} finished")
            actions.append(Node(**kwargs))
        return actions

    decls = []
    for a in graph.args:
        kw = {"default_value": a.default, "description": a.description}
        if a.choices:
            kw["choices"] = list(a.choices)
        decls.append(DeclareLaunchArgument(a.name, **kw))
    return LaunchDescription([*decls, OpaqueFunction(function=setup)])

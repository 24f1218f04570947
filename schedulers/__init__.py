"""Learning-rate schedules as closed-form, composable, serialisable functions of the step."""

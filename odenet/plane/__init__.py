"""Neural ODEs in the plane: a classifier of 2-D points (optionally augmented, ANODE) on odenet's
own solvers, and the views that show its flow. Builds on odenet.ode, odenet.data; never imports
the app."""
